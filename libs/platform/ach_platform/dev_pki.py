"""A development PKI: a CA for the services' server certificate, another CA for partners' client
certificates (so nothing the services' issuer signs, a server certificate say, passes as a partner),
a client certificate per partner (partner id in the subject CN and as SAN URI
urn:ach:partner:<id>), and a JWT signing key with its JWKS. `make certs` writes one under .data/pki
for the local stack; the tests make their own.

Deployed environments use certificates from their own CA (e.g. cert-manager) and an identity
provider's JWKS; nothing here is for production.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PARTNER_URI_PREFIX = "urn:ach:partner:"
DEFAULT_ISSUER = "https://ach.local/issuer"
DEFAULT_AUDIENCE = "ach-platform"


@dataclass(frozen=True)
class DevPki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def partners_ca_cert(self) -> Path:
        """The CA of partners' client certificates: the only one the services accept clients from."""
        return self.directory / "partners-ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def jwks(self) -> Path:
        return self.directory / "jwks.json"

    @property
    def jwt_key(self) -> Path:
        return self.directory / "jwt-signing-key.pem"

    def client_cert(self, partner_id: str) -> Path:
        return self.directory / "partners" / f"{partner_id}.pem"

    def client_key(self, partner_id: str) -> Path:
        return self.directory / "partners" / f"{partner_id}-key.pem"

    def mint_token(
        self,
        partner_id: str,
        *,
        user_id: str = "",
        ttl_s: int = 900,
        audience: str = DEFAULT_AUDIENCE,
        issuer: str = DEFAULT_ISSUER,
        expired: bool = False,
        key_path: Path | None = None,
    ) -> str:
        """A signed bearer token for a partner (sub = partner id), as an identity provider would issue."""
        now = dt.datetime.now(dt.UTC)
        issued = now - dt.timedelta(seconds=ttl_s * 2) if expired else now
        key_file = key_path or self.jwt_key
        kid = key_file.stem
        claims = {
            "iss": issuer,
            "aud": audience,
            "sub": partner_id,
            "iat": issued,
            "exp": issued + dt.timedelta(seconds=ttl_s),
            "jti": f"{partner_id}-{now.timestamp()}",
        }
        if user_id:
            claims["ach_user"] = user_id
        return jwt.encode(claims, key_file.read_bytes(), algorithm="ES256", headers={"kid": kid})


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    """Created readable by its owner only (never written first and chmod-ed after: for a moment
    anyone could have read it). An existing file is replaced the same way."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _cert(
    subject_cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    server: bool = False,
    days: int = 825,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ACH local development"),
            x509.NameAttribute(NameOID.COMMON_NAME, subject_cn),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def create(directory: Path, partners: list[str], server_names: list[str] | None = None) -> DevPki:
    """Write a fresh development PKI; existing files in ``directory`` are replaced."""
    import ipaddress

    pki = DevPki(directory)
    (directory / "partners").mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert("ACH local development CA", ca_key, None, ca_key, ca=True, days=3650)
    _write_cert(ca, pki.ca_cert)
    _write_key(ca_key, directory / "ca-key.pem")

    names = server_names or ["localhost"]
    server_key = _key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    _write_cert(_cert("ach-services", server_key, ca, ca_key, sans=sans, server=True), pki.server_cert)
    _write_key(server_key, pki.server_key)

    partners_key = _key()
    partners_ca = _cert(
        "ACH local development partners CA", partners_key, None, partners_key, ca=True, days=3650
    )
    _write_cert(partners_ca, pki.partners_ca_cert)
    _write_key(partners_key, directory / "partners-ca-key.pem")
    for partner in partners:
        add_partner(pki, partner, partners_ca, partners_key)

    signing_key = _key()
    _write_key(signing_key, pki.jwt_key)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(signing_key.public_key()))
    jwk.update({"kid": pki.jwt_key.stem, "use": "sig", "alg": "ES256"})
    pki.jwks.write_text(json.dumps({"keys": [jwk]}, indent=2))
    return pki


def add_partner(
    pki: DevPki,
    partner_id: str,
    ca: x509.Certificate | None = None,
    ca_key: ec.EllipticCurvePrivateKey | None = None,
) -> None:
    """Issue a client certificate for one partner from the partners' development CA."""
    if ca is None or ca_key is None:
        ca = x509.load_pem_x509_certificate(pki.partners_ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(
            (pki.directory / "partners-ca-key.pem").read_bytes(), None
        )
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key = loaded
    key = _key()
    cert = _cert(
        partner_id, key, ca, ca_key, sans=[x509.UniformResourceIdentifier(PARTNER_URI_PREFIX + partner_id)]
    )
    _write_cert(cert, pki.client_cert(partner_id))
    _write_key(key, pki.client_key(partner_id))


def main() -> None:
    """python -m ach_platform.dev_pki DIR PARTNER... (make certs): a fresh PKI unless DIR has one."""
    import sys

    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m ach_platform.dev_pki DIR [PARTNER ...]")
    directory, partners = Path(sys.argv[1]), sys.argv[2:]
    pki = DevPki(directory)
    if pki.ca_cert.is_file() and pki.partners_ca_cert.is_file():  # one made before has no partners CA
        for partner in partners:
            if not pki.client_cert(partner).is_file():
                add_partner(pki, partner)
        print(f"dev PKI: {directory} (existing CA kept)", file=sys.stderr)
        return
    create(directory, partners)
    print(
        f"dev PKI: created {directory} (CA, server certificate, {len(partners)} partner certificates, JWKS)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
