"""Build-time helper: turn an RSA key (PEM, made by ``openssl genrsa``) into WOPI proof-key attributes.

Collabora (like Office Online) publishes its proof key in discovery as ``<proof-key value=… modulus=…
exponent=… oldvalue=… oldmodulus=… oldexponent=…/>``: modulus and exponent are big-endian base64, value is
the key as a Microsoft CSP PUBLICKEYBLOB in base64. This reads ``openssl rsa -noout -text`` output
(standard library only: the collabora stand-in has no crypto package) and writes that JSON.
Usage: ``make_proof_key.py CURRENT.txt OLD.txt > proof-key.json``.

Leaves out: the private half is not kept; the stand-in never signs WOPI requests.
"""

import base64
import json
import re
import struct
import sys


def parse_openssl_text(text):
    """(modulus, exponent) integers from ``openssl rsa -noout -text`` output."""
    block = re.search(r"modulus:\s*\n((?:\s+[0-9a-f:]+\n)+)", text)
    exp = re.search(r"publicExponent:\s*(\d+)", text)
    if not block or not exp:
        raise SystemExit("cannot parse openssl output")
    modulus = int(re.sub(r"[\s:]", "", block.group(1)), 16)
    return modulus, int(exp.group(1))


def b64_int(number):
    """Big-endian base64 of a positive integer."""
    return base64.b64encode(number.to_bytes((number.bit_length() + 7) // 8, "big")).decode()


def csp_blob(modulus, exponent):
    """Microsoft PUBLICKEYBLOB (RSA1) of the key, base64."""
    bits = modulus.bit_length()
    header = struct.pack("<BBHI", 0x06, 0x02, 0, 0x0000A400) + b"RSA1" + struct.pack("<II", bits, exponent)
    return base64.b64encode(header + modulus.to_bytes((bits + 7) // 8, "little")).decode()


def attrs(prefix, path):
    with open(path, encoding="ascii") as fh:
        modulus, exponent = parse_openssl_text(fh.read())
    return {
        f"{prefix}value": csp_blob(modulus, exponent),
        f"{prefix}modulus": b64_int(modulus),
        f"{prefix}exponent": b64_int(exponent),
    }


if __name__ == "__main__":
    json.dump({**attrs("", sys.argv[1]), **attrs("old", sys.argv[2])}, sys.stdout, indent=1)
    sys.stdout.write("\n")
