use flotilla_video::{Ffmpeg, Limits, RunControl, TranscodeSpec, Trim, VideoError, Watermark};

use crate::support::{Harness, Source, setup};

/// Transcodes `input` with the default spec, expecting a failure.
async fn transcode_error(h: &Harness, input: &std::path::Path) -> VideoError {
    let output = h.path("out.mp4");
    let err = h
        .ffmpeg
        .transcode(
            input,
            &output,
            &TranscodeSpec::default(),
            &RunControl::new(),
        )
        .await
        .unwrap_err();
    assert!(!output.exists(), "no output is left behind");
    err
}

fn assert_invalid_media(err: &VideoError, phrase: &str) {
    assert_eq!(err.code(), "invalid_media", "{err}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains(phrase),
        "{err:?} should mention {phrase:?}"
    );
}

#[tokio::test]
async fn empty_file_is_invalid_media() {
    let h = setup();
    let input = h.path("empty.mp4");
    std::fs::write(&input, b"").unwrap();

    assert_invalid_media(&transcode_error(&h, &input).await, "empty");
    assert_invalid_media(&h.ffmpeg.probe(&input).await.unwrap_err(), "empty");
}

#[tokio::test]
async fn first_half_of_an_mp4_is_invalid_media() {
    let h = setup();
    let whole = Source::new(320, 240)
        .seconds(3.0)
        .write(&h, "whole.mp4")
        .await;
    let bytes = std::fs::read(&whole).unwrap();
    let input = h.path("half.mp4");
    std::fs::write(&input, &bytes[..bytes.len() / 2]).unwrap();

    let err = transcode_error(&h, &input).await;

    assert_invalid_media(&err, "truncated or corrupt");
    assert!(err.to_string().contains("moov atom not found"), "{err}");
    assert!(
        !err.to_string().contains(h.dir.path().to_str().unwrap()),
        "no local path: {err}"
    );
}

/// With the index first, the first half probes fine: the run finds the cut.
#[tokio::test]
async fn first_half_of_a_faststart_mp4_is_invalid_media() {
    let h = setup();
    let whole = Source::new(320, 240)
        .seconds(4.0)
        .faststart()
        .write(&h, "whole.mp4")
        .await;
    let bytes = std::fs::read(&whole).unwrap();
    let input = h.path("half.mp4");
    std::fs::write(&input, &bytes[..bytes.len() / 2]).unwrap();

    assert_invalid_media(
        &transcode_error(&h, &input).await,
        "the file is truncated or corrupt",
    );
}

#[tokio::test]
async fn text_named_mp4_is_invalid_media() {
    let h = setup();
    let input = h.path("notes.mp4");
    std::fs::write(&input, "These are my notes, not a video.\n".repeat(50)).unwrap();

    assert_invalid_media(&transcode_error(&h, &input).await, "not a media file");
}

#[tokio::test]
async fn audio_only_file_has_no_video_stream() {
    let h = setup();
    let input = h.path("song.m4a");
    let sine = "sine=frequency=440:duration=2".to_string();
    crate::support::ffmpeg(&[
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        sine,
        input.to_str().unwrap().into(),
    ])
    .await;

    assert_invalid_media(&transcode_error(&h, &input).await, "no video stream");
    let poster = h
        .ffmpeg
        .poster(&input, &h.path("p.jpg"), None, 320, &RunControl::new())
        .await;
    assert_invalid_media(&poster.unwrap_err(), "no video stream");
    // Probing it is fine: it is valid audio.
    assert!(h.probe(&input).await.audio().is_some());
}

/// An HLS playlist in disguise would make FFmpeg read the files it names.
#[tokio::test]
async fn playlist_named_mp4_is_refused() {
    let h = setup();
    let secret = Source::new(320, 240)
        .seconds(1.0)
        .write(&h, "secret.mp4")
        .await;
    let input = h.path("upload.mp4");
    let playlist = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{}\n#EXT-X-ENDLIST\n",
        secret.display()
    );
    std::fs::write(&input, playlist).unwrap();

    assert_invalid_media(&transcode_error(&h, &input).await, "playlist");
}

#[tokio::test]
async fn missing_input_is_an_io_error() {
    let h = setup();
    let err = transcode_error(&h, &h.path("nowhere.mp4")).await;
    assert_eq!(err.code(), "io", "{err}");
}

#[tokio::test]
async fn missing_watermark_and_intro_are_named_in_the_error() {
    let h = setup();
    let input = Source::new(320, 240).seconds(1.0).write(&h, "in.mp4").await;
    let specs = [
        (
            "watermark.path",
            TranscodeSpec {
                watermark: Some(Watermark::new(h.path("logo.png"))),
                ..Default::default()
            },
        ),
        (
            "intro",
            TranscodeSpec {
                intro: Some(h.path("intro.mp4")),
                ..Default::default()
            },
        ),
        (
            "trim.start_s",
            TranscodeSpec {
                trim: Some(Trim {
                    start_s: 5.0,
                    max_duration_s: None,
                }),
                ..Default::default()
            },
        ),
    ];
    for (field, spec) in specs {
        let err = h
            .ffmpeg
            .transcode(&input, &h.path("out.mp4"), &spec, &RunControl::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_spec", "{err}");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains(field), "{err} should name {field}");
    }
}

#[tokio::test]
async fn intro_without_video_is_named() {
    let h = setup();
    let input = Source::new(320, 240).seconds(1.0).write(&h, "in.mp4").await;
    let intro = h.path("intro.mp4");
    std::fs::write(&intro, b"\0\0\0\x20garbage").unwrap();
    let spec = TranscodeSpec {
        intro: Some(intro),
        ..Default::default()
    };

    let err = h
        .ffmpeg
        .transcode(&input, &h.path("out.mp4"), &spec, &RunControl::new())
        .await
        .unwrap_err();

    assert_invalid_media(&err, "intro: ");
}

#[tokio::test]
async fn inputs_over_the_limits_are_refused_before_ffmpeg_runs() {
    let h = setup();
    let input = Source::new(640, 480).seconds(3.0).write(&h, "in.mp4").await;
    let strict = |limits| h.ffmpeg.clone().with_limits(limits);

    let long = strict(Limits {
        max_duration_s: 2.0,
        ..Limits::default()
    });
    let err = long
        .transcode(
            &input,
            &h.path("out.mp4"),
            &TranscodeSpec::default(),
            &RunControl::new(),
        )
        .await;
    let err = err.unwrap_err();
    assert_eq!(
        (err.code(), err.is_retryable()),
        ("too_long", false),
        "{err}"
    );

    let small = strict(Limits {
        max_width: 320,
        max_height: 240,
        ..Limits::default()
    });
    let err = small
        .preview(&input, &h.path("p.mp4"), 0.0, 1.0, 120, &RunControl::new())
        .await;
    let err = err.unwrap_err();
    assert_eq!(
        (err.code(), err.is_retryable()),
        ("too_large", false),
        "{err}"
    );
}

#[tokio::test]
async fn missing_programs_are_ffmpeg_missing_and_retryable() {
    let h = setup();
    let input = Source::new(320, 240).seconds(1.0).write(&h, "in.mp4").await;
    let nowhere = h.path("no-such-ffmpeg");
    let no_probe = Ffmpeg::new(h.ffmpeg.ffmpeg_path().into(), nowhere.clone());
    let no_ffmpeg = Ffmpeg::new(nowhere, h.ffmpeg.ffprobe_path().into());

    for ffmpeg in [no_probe, no_ffmpeg] {
        let err = ffmpeg
            .transcode(
                &input,
                &h.path("out.mp4"),
                &TranscodeSpec::default(),
                &RunControl::new(),
            )
            .await;
        let err = err.unwrap_err();
        assert_eq!(
            (err.code(), err.is_retryable()),
            ("ffmpeg_missing", true),
            "{err}"
        );
        assert!(err.to_string().contains("no-such-ffmpeg"), "{err}");
    }
}
