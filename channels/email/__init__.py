"""The e-mail channel: parse inbound mail, detect loops and bounces, compose and send replies,
and take mail in over IMAP (IDLE) or SMTP.

Each module does one job so that the hub can wire them without pulling in I/O it does not use:
``parse`` (bytes → Message), ``loops`` (RFC 3834), ``dsn`` (RFC 3464), ``compose`` (replies
that thread), ``smtp_out`` (aiosmtplib), ``imap`` (aioimaplib intake), ``smtp_in`` (aiosmtpd).
"""
