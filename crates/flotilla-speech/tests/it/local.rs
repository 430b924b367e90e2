//! Whisper through the helper process: real speech, silence, restarts, serialised calls.

use std::process::Command;
use std::time::Instant;

use flotilla_speech::{SpeechError, Transcriber, Transcript, extract_16k_mono};

use crate::fixture::{arg, ffmpeg, model, speech_wav};

/// The checks every transcript of the test sentence must pass.
pub(crate) fn assert_hello_test(t: &Transcript, audio_s: f64) {
    let text = t.text().to_lowercase();
    assert!(text.contains("hello") && text.contains("test"), "{text:?}");
    assert!(!t.empty && t.note.is_none());
    for s in &t.segments {
        assert!(0.0 <= s.start && s.start <= s.end, "{s:?}");
        assert!(
            s.end <= audio_s + 0.05,
            "segment ends at {} in {audio_s} s of audio",
            s.end
        );
    }
}

fn assert_words_ordered(t: &Transcript) {
    let words: Vec<_> = t.segments.iter().flat_map(|s| &s.words).collect();
    assert!(words.len() >= 5, "{words:?}");
    for pair in words.windows(2) {
        assert!(
            pair[0].start <= pair[0].end && pair[0].end <= pair[1].start + 1e-6,
            "{pair:?}"
        );
    }
    assert!(
        words
            .iter()
            .all(|w| w.probability.is_some_and(|p| (0.0..=1.0).contains(&p)))
    );
}

#[tokio::test]
async fn tiny_en_transcribes_spoken_english_with_word_timings() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path()).await;
    let audio_s = flotilla_speech::audio::wav_duration(&wav).unwrap();
    let started = Instant::now();
    let transcriber = Transcriber::start(&model("tiny.en")).await.unwrap();
    let start = started.elapsed();
    let began = Instant::now();
    let t = transcriber.transcribe(&wav, true).await.unwrap();
    let infer = began.elapsed();
    eprintln!(
        "tiny.en: helper start {start:?} (model load {:?}), {audio_s:.2} s of audio in {infer:?}, \
         real-time factor {:.3}: {:?}",
        transcriber.ready_info().await.unwrap().load,
        infer.as_secs_f64() / audio_s,
        t.text()
    );
    assert_hello_test(&t, audio_s);
    assert_eq!(t.language.as_deref(), Some("en"));
    assert!((t.duration_s - audio_s).abs() < 0.05);
    assert_words_ordered(&t);
    let without = transcriber.transcribe(&wav, false).await.unwrap();
    assert!(without.segments.iter().all(|s| s.words.is_empty()));
}

#[tokio::test]
async fn the_multilingual_base_model_detects_english() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path()).await;
    let transcriber = Transcriber::start(&model("base")).await.unwrap();
    assert!(transcriber.ready_info().await.unwrap().multilingual);
    let t = transcriber.transcribe(&wav, false).await.unwrap();
    assert_hello_test(&t, flotilla_speech::audio::wav_duration(&wav).unwrap());
    assert_eq!(t.language.as_deref(), Some("en"));
    assert!(t.language_probability.unwrap() > 0.5, "{t:?}");
}

#[tokio::test]
async fn silence_gives_an_empty_transcript_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let input = arg(dir.path(), "silence.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=44100:cl=stereo",
        "-t",
        "3",
        &input,
    ]);
    let wav = dir.path().join("silence-16k.wav");
    let info = extract_16k_mono(input.as_ref(), &wav).await.unwrap();
    assert!(
        info.has_audio && (info.duration_s - 3.0).abs() < 0.05,
        "{info:?}"
    );
    let transcriber = Transcriber::start(&model("tiny.en")).await.unwrap();
    let t = transcriber.transcribe(&wav, true).await.unwrap();
    assert!(t.empty, "{t:?}");
    assert!(t.segments.is_empty());
    assert!(t.note.unwrap().contains("no speech"));
    assert_eq!(flotilla_speech::to_srt(&Transcript::empty(3.0, "x")), "");
}

/// Kills the transcriber's running helper with SIGKILL; returns its pid.
async fn kill_helper(transcriber: &Transcriber) -> u32 {
    let pid = transcriber.pid().await.expect("a running helper");
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    pid
}

#[tokio::test]
async fn a_killed_helper_fails_the_call_retryably_and_the_next_call_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path()).await;
    let transcriber = Transcriber::start(&model("tiny.en")).await.unwrap();
    let pid = kill_helper(&transcriber).await;

    let err = transcriber.transcribe(&wav, false).await.unwrap_err();
    assert!(matches!(err, SpeechError::HelperDied { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("signal: 9"), "{err}");
    assert_eq!(transcriber.pid().await, None);

    let t = transcriber.transcribe(&wav, false).await.unwrap();
    assert_hello_test(&t, flotilla_speech::audio::wav_duration(&wav).unwrap());
    let new_pid = transcriber.pid().await.unwrap();
    assert_ne!(new_pid, pid);
    transcriber.shutdown().await;
    assert_eq!(transcriber.pid().await, None);
}

#[tokio::test]
async fn a_helper_that_keeps_dying_is_reported_after_the_third_death() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path()).await;
    let transcriber = Transcriber::start(&model("tiny.en")).await.unwrap();
    for death in 1..=flotilla_speech::transcriber::DEATHS_DEGRADED {
        assert_eq!(
            transcriber.keeps_dying(),
            None,
            "after {} deaths",
            death - 1
        );
        if transcriber.pid().await.is_none() {
            // Restart it (the call after a death starts a new helper).
            transcriber.transcribe(&wav, false).await.unwrap();
        }
        kill_helper(&transcriber).await;
        let err = transcriber.transcribe(&wav, false).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
    let reason = transcriber
        .keeps_dying()
        .expect("three deaths in the window");
    assert!(reason.contains("`tiny.en` died 3 times"), "{reason}");
    // It still serves: the next call starts a new helper.
    transcriber.transcribe(&wav, false).await.unwrap();
    transcriber.shutdown().await;
}

/// Long audio is read and transcribed a chunk at a time (memory stays bounded): the
/// sentence said twice, the second time after a chunk boundary, is found twice with the
/// second's timings shifted past the boundary and inside the audio.
#[tokio::test]
async fn long_audio_is_transcribed_a_chunk_at_a_time_with_shifted_timings() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path()).await;
    let said_s = flotilla_speech::audio::wav_duration(&wav).unwrap();
    // The first saying padded with silence to a whole chunk, then the second.
    let chunk_s = said_s.ceil() as u32 + 1;
    let twice = arg(dir.path(), "twice.wav");
    ffmpeg(&[
        "-i",
        &wav.to_string_lossy(),
        "-i",
        &wav.to_string_lossy(),
        "-filter_complex",
        &format!("[0:a]apad=whole_dur={chunk_s}[a];[a][1:a]concat=n=2:v=0:a=1"),
        "-ar",
        "16000",
        "-ac",
        "1",
        "-c:a",
        "pcm_s16le",
        &twice,
    ]);
    let total_s = flotilla_speech::audio::wav_duration(std::path::Path::new(&twice)).unwrap();
    let mut config = model("tiny.en");
    config.chunk_s = chunk_s;
    let transcriber = Transcriber::start(&config).await.unwrap();
    let t = transcriber
        .transcribe(std::path::Path::new(&twice), true)
        .await
        .unwrap();
    transcriber.shutdown().await;
    assert!(
        (t.duration_s - total_s).abs() < 0.05,
        "{} vs {total_s}",
        t.duration_s
    );
    let hello: Vec<&flotilla_speech::transcript::Segment> = t
        .segments
        .iter()
        .filter(|s| s.text.to_lowercase().contains("hello"))
        .collect();
    assert_eq!(hello.len(), 2, "{t:?}");
    assert!(hello[0].end <= f64::from(chunk_s), "{:?}", hello[0]);
    assert!(
        hello[1].start >= f64::from(chunk_s) - 0.05,
        "{:?}",
        hello[1]
    );
    assert!(hello[1].end <= total_s + 0.05, "{:?}", hello[1]);
    assert_words_ordered(&t);
}

#[tokio::test]
async fn concurrent_calls_share_one_helper_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path()).await;
    let transcriber = Transcriber::start(&model("tiny.en")).await.unwrap();
    let pid = transcriber.pid().await;
    let (a, b) = tokio::join!(
        transcriber.transcribe(&wav, false),
        transcriber.transcribe(&wav, true)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.text(), b.text());
    assert!(b.segments.iter().any(|s| !s.words.is_empty()));
    assert_eq!(transcriber.pid().await, pid);
}

#[tokio::test]
async fn a_missing_wav_is_bad_audio_and_the_helper_survives() {
    let transcriber = Transcriber::start(&model("tiny.en")).await.unwrap();
    let pid = transcriber.pid().await;
    let err = transcriber
        .transcribe("/nonexistent/a.wav".as_ref(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, SpeechError::BadAudio { .. }), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(transcriber.pid().await, pid);
}
