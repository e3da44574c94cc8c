"""The reports pages' words (Bahasa Indonesia, English), merged into ``hub.web.i18n``'s
tables. Same rules as there: plain strings with ``{name}`` placeholders, never markup."""

from __future__ import annotations

ID: dict[str, str] = {
    "reports.title": "Laporan layanan",
    "reports.period": "Periode {first} s.d. {last} (WIB)",
    "reports.as_of": "data per {when}",
    "reports.from": "Dari tanggal",
    "reports.to": "Sampai tanggal",
    "reports.group_by": "Kelompokkan menurut",
    "reports.group.all": "Semua",
    "reports.group.overall": "Keseluruhan",
    "reports.group.unit": "Per unit kerja",
    "reports.group.channel": "Per kanal",
    "reports.group.category": "Per kategori",
    "reports.submit": "Tampilkan",
    "reports.download_csv": "Unduh CSV",
    "reports.print_hint": (
        "Untuk versi cetak atau PDF, gunakan menu Cetak pada peramban: "
        "navigasi dan formulir tidak ikut tercetak."
    ),
    "reports.all_tickets": "Semua tiket",
    "reports.no_category": "(tanpa kategori)",
    "reports.none": "Tidak ada tiket pada periode ini.",
    "reports.volumes": "Jumlah tiket",
    "reports.created": "Masuk",
    "reports.resolved": "Selesai dalam periode",
    "reports.open_at_end": "Terbuka di akhir periode",
    "reports.reopened": "Dibuka kembali",
    "reports.reopen_rate": "Tingkat buka kembali",
    "reports.first_response": "Tanggapan pertama",
    "reports.resolution": "Penyelesaian",
    "reports.median": "Median",
    "reports.p90": "P90",
    "reports.compliance": "Kepatuhan SLA",
    "reports.breached": "Terlambat (masih berjalan)",
    "reports.seconds": "{n} dtk",
    "reports.percent": "{p} %",
    "reports.notes": "Cara membaca laporan",
    "reports.note.cohort": (
        "Laporan mencakup tiket yang masuk dalam periode (hari kalender WIB). "
        "Selesai dalam periode: diselesaikan sebelum akhir periode; selebihnya terbuka "
        "di akhir periode."
    ),
    "reports.note.times": (
        "Waktu tanggapan pertama dihitung dari tiket masuk sampai balasan petugas pertama "
        "(balasan otomatis tidak dihitung); waktu penyelesaian sampai tiket terakhir "
        "diselesaikan. Keduanya dalam waktu kalender."
    ),
    "reports.note.percentiles": (
        "Median dan P90 memakai metode peringkat terdekat (nearest rank): nilainya selalu "
        "waktu yang benar-benar dialami sebuah tiket."
    ),
    "reports.note.sla": (
        "Kepatuhan SLA = tepat waktu dibagi (tepat waktu + terlambat) dari target yang "
        "sudah selesai, menurut jam layanan; Terlambat (masih berjalan) menghitung tiket "
        "yang belum dijawab atau diselesaikan padahal sudah lewat target."
    ),
    "reports.note.reopen": (
        "Tingkat buka kembali = tiket yang dibuka kembali oleh pelapor dibagi tiket yang "
        "pernah diselesaikan."
    ),
    "reports.note.merged": (
        "Tiket yang digabungkan ke tiket lain tidak dihitung tersendiri: kasusnya dihitung "
        "pada tiket tujuan."
    ),
    "reports.forbidden_title": "Khusus supervisor",
    "reports.forbidden": "Laporan hanya dapat dibuka oleh supervisor dan admin.",
    "reports.err.bad_date": "Tanggal tidak valid ({raw}): gunakan format TTTT-BB-HH.",
    "reports.err.reversed": "Tanggal akhir ({last}) lebih awal dari tanggal awal ({first}).",
    "reports.err.too_long": "Periode {days} hari terlalu panjang: paling lama {max} hari.",
    "reports.err.archived": "Tiket yang dibuat pada {months} sudah diarsipkan: laporan bulan "
    "tersebut tersedia untuk satu bulan penuh saja (tanggal 1 sampai akhir bulan). Minta "
    "hari-hari lainnya secara terpisah.",
}

EN: dict[str, str] = {
    "reports.title": "Service reports",
    "reports.period": "Period {first} to {last} (WIB)",
    "reports.as_of": "data as of {when}",
    "reports.from": "From",
    "reports.to": "To",
    "reports.group_by": "Group by",
    "reports.group.all": "All",
    "reports.group.overall": "Overall",
    "reports.group.unit": "Per unit",
    "reports.group.channel": "Per channel",
    "reports.group.category": "Per category",
    "reports.submit": "Show",
    "reports.download_csv": "Download CSV",
    "reports.print_hint": (
        "For a printed or PDF copy, use the browser's Print menu: "
        "navigation and forms are left out."
    ),
    "reports.all_tickets": "All tickets",
    "reports.no_category": "(no category)",
    "reports.none": "No tickets in this period.",
    "reports.volumes": "Tickets",
    "reports.created": "Created",
    "reports.resolved": "Resolved in period",
    "reports.open_at_end": "Open at period end",
    "reports.reopened": "Reopened",
    "reports.reopen_rate": "Reopen rate",
    "reports.first_response": "First response",
    "reports.resolution": "Resolution",
    "reports.median": "Median",
    "reports.p90": "P90",
    "reports.compliance": "SLA compliance",
    "reports.breached": "Late (still running)",
    "reports.seconds": "{n} s",
    "reports.percent": "{p} %",
    "reports.notes": "How to read this report",
    "reports.note.cohort": (
        "The report covers the tickets created in the period (calendar days, WIB). "
        "Resolved in period: resolved before the period ended; the others were open at "
        "its end."
    ),
    "reports.note.times": (
        "First-response time runs from creation to the first officer reply (automatic "
        "acknowledgements do not count); resolution time to the latest resolution. "
        "Both in calendar time."
    ),
    "reports.note.percentiles": (
        "Median and P90 are nearest-rank percentiles: always a time some ticket really had."
    ),
    "reports.note.sla": (
        "SLA compliance = met divided by (met + missed) over finished targets, counted in "
        "service hours; Late (still running) counts tickets not yet answered or resolved "
        "although past their target."
    ),
    "reports.note.reopen": (
        "Reopen rate = tickets the citizen reopened divided by tickets resolved at least once."
    ),
    "reports.note.merged": (
        "A ticket merged into another is not counted on its own: its case is counted on the "
        "ticket it was merged into."
    ),
    "reports.forbidden_title": "Supervisors only",
    "reports.forbidden": "Reports can be opened by supervisors and admins only.",
    "reports.err.bad_date": "Not a valid date ({raw}): use YYYY-MM-DD.",
    "reports.err.reversed": "The end date ({last}) is before the start date ({first}).",
    "reports.err.too_long": "A period of {days} days is too long: at most {max} days.",
    "reports.err.archived": "Tickets created in {months} are archived: their saved report "
    "covers one whole month only (from the 1st to its last day). Ask for the other days "
    "separately.",
}
