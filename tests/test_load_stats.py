"""Channel load per minute, counted by the dispatcher and summed into a chart's buckets:
hand-checked against messages sent at known times (a manual clock)."""

from __future__ import annotations

from tests.helpers import HubHarness, inbound_params

T0 = 1_790_000_100.0  # 2026-09-21 20:15:00 UTC: a whole quarter hour


async def test_inbound_and_opened_per_minute_with_duplicates_not_counted(
    harness: HubHarness,
) -> None:
    h = harness
    h.clock.t = T0 + 5  # minute 0
    first = inbound_params("THR belum dibayar", phone="+6281234567890")
    assert (await h.post_whatsapp(first))[0] == 200
    assert (await h.post_whatsapp(first))[0] == 200  # Twilio's retry: one message
    await h.post_whatsapp(inbound_params("PHK sepihak", phone="+6281234567891"))
    other = inbound_params(
        "PHK sepihak", phone="+6281234567891", account_sid="AC" + "2" * 32, to="+628119521151"
    )
    await h.post_whatsapp(other, account="wa2")
    await h.drain_inbound()
    h.clock.t = T0 + 3 * 60 + 59  # minute 3
    await h.post_whatsapp(inbound_params("Ada kabar?", phone="+6281234567890"))
    await h.drain_inbound()

    now = T0 + 10 * 60
    series = await h.hub.load.series("inbound", "hour", now)
    assert series.bucket_s == 60
    assert len(series.starts) == 60
    i0 = series.starts.index(int(T0))
    assert series.values["whatsapp/wa1"][i0] == 2
    assert series.values["whatsapp/wa2"][i0] == 1
    assert series.values["whatsapp/wa1"][i0 + 3] == 1
    assert sum(series.total()) == 4
    opened = await h.hub.load.series("opened", "hour", now)
    assert list(opened.values) == ["whatsapp/wa1|general"]
    assert sum(opened.values["whatsapp/wa1|general"]) == 2  # two citizens, two tickets

    # A day's chart has 15-minute buckets: the five messages are in one.
    day = await h.hub.load.series("inbound", "day", now)
    assert day.bucket_s == 900
    assert len(day.starts) == 96
    assert sorted(v for v in day.total() if v) == [4.0]
    rates = await h.hub.load.per_minute("inbound", now, minutes=15)
    assert rates == {"whatsapp/wa1": 3 / 15, "whatsapp/wa2": 1 / 15}


async def test_backlog_samples_keep_the_peak_of_a_bucket(harness: HubHarness) -> None:
    load = harness.hub.load
    await load.sample_backlog({"general": 3, "hi_upah": 1}, T0)
    await load.sample_backlog({"general": 9, "hi_upah": 0}, T0 + 60)
    await load.sample_backlog({"general": 4}, T0 + 120)
    day = await load.series("backlog", "day", T0 + 300, peak=True)
    i = next(k for k, s in enumerate(day.starts) if s <= T0 < s + 900)
    assert day.values["general"][i] == 9
    assert day.values["hi_upah"][i] == 1
    hour = await load.series("backlog", "hour", T0 + 300, peak=True)
    j = hour.starts.index(int(T0))
    assert hour.values["general"][j : j + 3] == [3, 9, 4]
