"""A tiny ledger: posts amounts with the decimal context its config sets.

``GET /?amount=10&split=3`` splits an amount three ways, prints each posting
(to this app's own stdout destination) and answers with the shares.
"""

import decimal
import os
import sys
from urllib.parse import parse_qs


def application(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    amount = decimal.Decimal(query.get("amount", ["100"])[0])
    split = int(query.get("split", ["3"])[0])
    share = amount / split
    for n in range(1, split + 1):
        print(f"posting {n}/{split}: {share} {os.environ.get('LEDGER_CURRENCY', '')}")
    ctx = decimal.getcontext()
    body = (
        f"ledger: {amount} / {split} = {share}\n"
        f"decimal: prec={ctx.prec} rounding={ctx.rounding}\n"
        f"currency: {os.environ.get('LEDGER_CURRENCY')}\n"
        f"argv: {sys.argv}\n"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
