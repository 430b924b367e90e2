use flotilla_video::{MediaInfo, StreamKind};

use crate::support::{Source, assert_close, setup};

#[tokio::test]
async fn probe_reports_container_duration_and_streams() {
    let h = setup();
    let path = Source::new(640, 480)
        .rate(25)
        .seconds(3.0)
        .audio(44_100, 1)
        .write(&h, "in.mp4")
        .await;

    let info = h.probe(&path).await;

    assert!(info.container.contains("mp4"), "{}", info.container);
    assert_close(info.duration_s.unwrap(), 3.0, 0.1, "duration");
    assert_eq!(
        info.size_bytes,
        Some(std::fs::metadata(&path).unwrap().len())
    );
    assert!(info.bit_rate.unwrap() > 0);
    let video = info.video().unwrap();
    assert_eq!(
        (video.kind, video.codec.as_str()),
        (StreamKind::Video, "h264")
    );
    assert_eq!((video.width, video.height), (Some(640), Some(480)));
    assert_close(video.frame_rate.unwrap(), 25.0, 0.01, "frame rate");
    let audio = info.audio().unwrap();
    assert_eq!(audio.codec, "aac");
    assert_eq!((audio.sample_rate, audio.channels), (Some(44_100), Some(1)));
    assert_eq!(info.streams.len(), 2);
    // It is a job result: it must survive JSON.
    let json = serde_json::to_string(&info).unwrap();
    assert_eq!(serde_json::from_str::<MediaInfo>(&json).unwrap(), info);
}

#[tokio::test]
async fn probe_reads_other_containers_and_silent_video() {
    let h = setup();
    let path = Source::new(320, 240)
        .codec("mpeg4")
        .silent()
        .write(&h, "in.mkv")
        .await;

    let info = h.probe(&path).await;

    assert!(info.container.contains("matroska"), "{}", info.container);
    assert_eq!(info.video().unwrap().codec, "mpeg4");
    assert!(info.audio().is_none());
}
