//! Audio extraction with ffprobe + FFmpeg on media made by FFmpeg and espeak-ng.

use flotilla_speech::{SpeechError, extract_16k_mono};

use crate::fixture::{arg, ffmpeg, speech_wav};

#[tokio::test]
async fn a_video_speech_track_becomes_16k_mono_wav() {
    let dir = tempfile::tempdir().unwrap();
    let speech = speech_wav(dir.path()).await;
    let source = flotilla_speech::audio::wav_duration(&speech).unwrap();
    let video = arg(dir.path(), "talk.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=10",
        "-i",
        &speech.to_string_lossy(),
        "-shortest",
        "-c:v",
        "mpeg4",
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-ar",
        "44100",
        &video,
    ]);
    let out = dir.path().join("out.wav");
    let info = extract_16k_mono(video.as_ref(), &out).await.unwrap();
    assert!(info.has_audio);
    assert_eq!(info.wav.as_deref(), Some(out.as_path()));
    assert!(
        (info.duration_s - source).abs() < 0.5,
        "{} vs {source}",
        info.duration_s
    );
    let header = std::fs::read(&out).unwrap();
    // fmt chunk: PCM, 1 channel, 16000 Hz.
    assert_eq!(&header[20..24], &[1, 0, 1, 0]);
    assert_eq!(
        u32::from_le_bytes(header[24..28].try_into().unwrap()),
        16_000
    );
}

#[tokio::test]
async fn a_video_without_audio_is_reported_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let video = arg(dir.path(), "silent-film.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=160x120:rate=10",
        "-c:v",
        "mpeg4",
        &video,
    ]);
    let out = dir.path().join("out.wav");
    let info = extract_16k_mono(video.as_ref(), &out).await.unwrap();
    assert!(!info.has_audio);
    assert_eq!(info.wav, None);
    assert!(!out.exists());
    let declared = info.source_duration_s.unwrap();
    assert!((declared - 2.0).abs() < 0.2, "{declared}");
}

#[tokio::test]
async fn a_corrupt_file_is_bad_audio_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("broken.mp4");
    std::fs::write(&input, b"this is not a media file at all").unwrap();
    let err = extract_16k_mono(&input, &dir.path().join("out.wav"))
        .await
        .unwrap_err();
    assert!(matches!(err, SpeechError::BadAudio { .. }), "{err}");
    assert!(!err.is_retryable());
}
