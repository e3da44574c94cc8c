"""Ingest only: signed WhatsApp (Twilio) webhooks → messages on the inbound stream, the hub's
web role alone in its process, against a bare aiohttp handler and the ideal ingest handler
(verify, parse, coalesced XADD) through the same load generator, in rounds.

It is ``python -m bench.webhook_to_ticket --phases ingest``; every option of that module
applies (``--help``). Figures and what they mean: bench/README.md.
"""

from __future__ import annotations

import sys

from bench import webhook_to_ticket


def main() -> int:
    return webhook_to_ticket.main(["--phases", "ingest", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
