"""Verifies a keyhost access token with PyJWT, a JWT library that is not
keyhost's: the JWKS comes from GET /identity/keys.

Usage: verify_token.py JWKS_URL < token
Prints the verified claims as JSON; exits 1 with the reason when the token
does not verify.
"""
import json
import sys
import urllib.request

import jwt

jwks_url = sys.argv[1]
token = sys.stdin.read().strip()
with urllib.request.urlopen(jwks_url, timeout=10) as answer:
    jwks = json.load(answer)
kid = jwt.get_unverified_header(token).get("kid")
keys = {key["kid"]: key for key in jwks["keys"]}
if kid not in keys:
    print(f"no key {kid!r} in the JWKS", file=sys.stderr)
    sys.exit(1)
public = jwt.PyJWK.from_dict(keys[kid]).key
try:
    claims = jwt.decode(
        token,
        public,
        algorithms=["ES256"],
        issuer="keyhost",
        options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False},
    )
except jwt.PyJWTError as error:
    print(f"the token does not verify: {error}", file=sys.stderr)
    sys.exit(1)
print(json.dumps(claims))
