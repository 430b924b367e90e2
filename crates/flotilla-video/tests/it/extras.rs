use flotilla_video::{HlsSpec, PLAYLIST_NAME, RunControl};

use crate::support::{Source, assert_close, setup};

#[tokio::test]
async fn poster_is_a_jpeg_of_the_requested_width_taken_at_ten_percent() {
    let h = setup();
    let input = Source::new(640, 480).seconds(4.0).write(&h, "in.mp4").await;
    let output = h.path("poster.jpg");

    let poster = h
        .ffmpeg
        .poster(&input, &output, None, 320, &RunControl::new())
        .await
        .unwrap();

    assert_eq!((poster.width, poster.height), (320, 240));
    assert_close(poster.at_s, 0.4, 0.01, "10% of 4 s");
    let info = h.probe(&output).await;
    let video = info.video().unwrap();
    assert_eq!((video.codec.as_str(), video.width), ("mjpeg", Some(320)));
    assert_eq!(
        &std::fs::read(&output).unwrap()[..3],
        &[0xFF, 0xD8, 0xFF],
        "JPEG magic"
    );
}

#[tokio::test]
async fn poster_past_the_end_takes_a_late_frame() {
    let h = setup();
    let input = Source::new(320, 240).seconds(2.0).write(&h, "in.mp4").await;

    let poster = h
        .ffmpeg
        .poster(
            &input,
            &h.path("p.jpg"),
            Some(60.0),
            160,
            &RunControl::new(),
        )
        .await
        .unwrap();

    assert!(poster.at_s < 2.0, "{}", poster.at_s);
    assert_eq!(poster.width, 160);
}

#[tokio::test]
async fn preview_is_a_short_small_mp4() {
    let h = setup();
    let input = Source::new(640, 480).seconds(5.0).write(&h, "in.mp4").await;
    let output = h.path("preview.mp4");

    let preview = h
        .ffmpeg
        .preview(&input, &output, 1.0, 2.0, 180, &RunControl::new())
        .await
        .unwrap();

    assert_close(
        preview.media.duration_s.unwrap(),
        2.0,
        0.2,
        "preview duration",
    );
    let video = preview.media.video().unwrap();
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", Some(240), Some(180))
    );
    assert!(preview.media.audio().is_some(), "keeps the audio");
}

#[tokio::test]
async fn hls_copies_h264_aac_into_a_playlist_and_segments() {
    let h = setup();
    let input = Source::new(320, 240).seconds(5.0).write(&h, "in.mp4").await;
    let dir = h.path("hls");

    let hls = h
        .ffmpeg
        .hls(&input, &dir, &HlsSpec { segment_s: 1 }, &RunControl::new())
        .await
        .unwrap();

    assert!(hls.copied);
    assert_eq!(hls.playlist, dir.join(PLAYLIST_NAME));
    let playlist = std::fs::read_to_string(&hls.playlist).unwrap();
    assert!(
        playlist.starts_with("#EXTM3U") && playlist.contains("#EXT-X-ENDLIST"),
        "{playlist}"
    );
    assert!(hls.segments.len() >= 2, "{playlist}");
    for segment in &hls.segments {
        assert!(
            std::fs::metadata(segment).unwrap().len() > 0,
            "{}",
            segment.display()
        );
    }
}

#[tokio::test]
async fn hls_reencodes_other_codecs_with_keyframes_at_segment_boundaries() {
    let h = setup();
    let input = Source::new(320, 240)
        .seconds(5.0)
        .codec("mpeg4")
        .silent()
        .write(&h, "in.mkv")
        .await;
    let dir = h.path("out %d dir");

    let hls = h
        .ffmpeg
        .hls(&input, &dir, &HlsSpec { segment_s: 2 }, &RunControl::new())
        .await
        .unwrap();

    assert!(!hls.copied);
    assert!(hls.segments.len() >= 2, "{:?}", hls.segments);
    assert!(
        hls.segments
            .iter()
            .all(|s| s.starts_with(&dir) && s.exists())
    );
    let first = h.probe(&hls.segments[0]).await;
    assert_eq!(first.video().unwrap().codec, "h264");
}
