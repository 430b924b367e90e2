use flotilla_video::{Corner, RunControl, TranscodeSpec, Trim, Watermark};

use crate::support::{Rgb, Source, assert_close, png, setup, top_level_boxes};

fn is_black([r, g, b]: [u8; 3]) -> bool {
    r < 24 && g < 24 && b < 24
}

#[tokio::test]
async fn a_4_3_source_becomes_1280x720_h264_aac_faststart_with_black_bars() {
    let h = setup();
    let input = Source::new(640, 480)
        .seconds(2.0)
        .colour("white")
        .write(&h, "in.mp4")
        .await;
    let output = h.path("out.mp4");

    let done = h
        .ffmpeg
        .transcode(
            &input,
            &output,
            &TranscodeSpec::default(),
            &RunControl::new(),
        )
        .await
        .unwrap();

    let video = done.media.video().unwrap();
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", Some(1280), Some(720))
    );
    assert_eq!(done.media.audio().unwrap().codec, "aac");
    assert!(done.media.container.contains("mp4"));
    assert_close(done.media.duration_s.unwrap(), 2.0, 0.2, "duration");
    let boxes = top_level_boxes(&std::fs::read(&output).unwrap());
    let position = |name: &str| boxes.iter().position(|b| b == name).unwrap();
    assert!(
        position("moov") < position("mdat"),
        "faststart: moov first in {boxes:?}"
    );
    // 640x480 fits as 960x720: 160-pixel bars left and right.
    let frame = Rgb::frame(&output, 1.0, 1280, 720).await;
    for y in [10, 360, 710] {
        assert!(
            is_black(frame.pixel(5, y)),
            "left bar at y={y}: {:?}",
            frame.pixel(5, y)
        );
        assert!(is_black(frame.pixel(1274, y)), "right bar at y={y}");
        assert!(
            is_black(frame.pixel(150, y)),
            "just inside the left bar at y={y}"
        );
    }
    assert!(
        frame.mean(640, 360, 20).iter().all(|c| *c > 200.0),
        "the white picture in the centre"
    );
    assert!(
        frame.pixel(170, 360).iter().all(|c| *c > 200),
        "the picture starts at x=160"
    );
}

#[tokio::test]
async fn trim_keeps_at_most_max_duration() {
    let h = setup();
    let input = Source::new(320, 240).seconds(6.0).write(&h, "in.mp4").await;
    let output = h.path("out.mp4");
    let spec = TranscodeSpec {
        width: 640,
        height: 360,
        trim: Some(Trim {
            start_s: 1.0,
            max_duration_s: Some(2.0),
        }),
        ..TranscodeSpec::default()
    };

    let done = h
        .ffmpeg
        .transcode(&input, &output, &spec, &RunControl::new())
        .await
        .unwrap();

    assert_close(done.media.duration_s.unwrap(), 2.0, 0.2, "trimmed duration");
    let video = done.media.video().unwrap();
    assert_eq!((video.width, video.height), (Some(640), Some(360)));
}

#[tokio::test]
async fn intro_and_outro_of_other_sizes_rates_and_audio_are_joined() {
    let h = setup();
    let intro = Source::new(320, 240)
        .rate(15)
        .seconds(1.5)
        .silent()
        .write(&h, "intro.mp4")
        .await;
    let main = Source::new(640, 480)
        .rate(25)
        .seconds(4.0)
        .audio(44_100, 1)
        .write(&h, "main.mp4")
        .await;
    let outro = Source::new(480, 270)
        .rate(30)
        .seconds(1.0)
        .audio(22_050, 2)
        .write(&h, "outro.mp4")
        .await;
    let output = h.path("out.mp4");
    let spec = TranscodeSpec {
        trim: Some(Trim {
            start_s: 0.0,
            max_duration_s: Some(2.0),
        }),
        intro: Some(intro),
        outro: Some(outro),
        ..TranscodeSpec::default()
    };

    let done = h
        .ffmpeg
        .transcode(&main, &output, &spec, &RunControl::new())
        .await
        .unwrap();

    assert_close(
        done.media.duration_s.unwrap(),
        1.5 + 2.0 + 1.0,
        0.3,
        "intro + main + outro",
    );
    let video = done.media.video().unwrap();
    assert_eq!((video.width, video.height), (Some(1280), Some(720)));
    assert_close(
        video.frame_rate.unwrap(),
        25.0,
        0.01,
        "the main clip's rate",
    );
    assert_close(video.duration_s.unwrap(), 4.5, 0.3, "video duration");
    let audio = done.media.audio().unwrap();
    assert_eq!((audio.sample_rate, audio.channels), (Some(48_000), Some(2)));
    assert_close(
        audio.duration_s.unwrap(),
        4.5,
        0.3,
        "audio covers the silent intro too",
    );
}

#[tokio::test]
async fn watermark_is_drawn_in_the_chosen_corner() {
    let h = setup();
    let input = Source::new(640, 360)
        .seconds(2.0)
        .colour("0x808080")
        .write(&h, "in.mp4")
        .await;
    let logo = png(&h, "logo.png", "red", 64).await;
    let output = h.path("out.mp4");
    let spec = TranscodeSpec {
        watermark: Some(Watermark {
            position: Corner::TopRight,
            scale: 0.2,
            margin: 16,
            ..Watermark::new(logo)
        }),
        ..TranscodeSpec::default()
    };

    h.ffmpeg
        .transcode(&input, &output, &spec, &RunControl::new())
        .await
        .unwrap();

    // The logo is 256x256 at x 1008..1264, y 16..272.
    let frame = Rgb::frame(&output, 1.0, 1280, 720).await;
    let [r, g, b] = frame.mean(1136, 144, 60);
    assert!(
        r > 180.0 && g < 80.0 && b < 80.0,
        "red logo top right: {r} {g} {b}"
    );
    let [r, g, b] = frame.mean(144, 576, 60);
    assert!(
        (r - g).abs() < 20.0 && (r - b).abs() < 20.0 && r > 90.0,
        "grey bottom left: {r} {g} {b}"
    );
}
