#!/usr/bin/env python3
"""A second, independent SNMPv3 client for tests/it/snmp_v3.rs: pysnmp.

Reads one JSON job list on stdin and prints one JSON result list on stdout:

  in:  {"host": "127.0.0.1", "port": 16100,
        "jobs": [{"user": "u", "auth": "SHA", "auth_key": "…",
                  "priv": "AES192C", "priv_key": "…", "context": "",
                  "get": ["1.3.6.1.2.1.1.1.0"], "walk": "1.3.6.1.2.1.1"}]}
  out: [{"user": "u", "error": null,
         "get": [[oid, type, value]], "walk": [[oid, type, value]]}]

`auth`/`priv` use agentcluster's protocol names (auth NONE, priv NONE for
lower levels). Values: OCTET STRING and Opaque as hex, OIDs and IpAddress
dotted, numbers as numbers, exceptions as null with their type.
"""

import asyncio
import json
import sys

from pyasn1.type import univ
from pysnmp.proto import rfc1902
from pysnmp.hlapi.v3arch.asyncio import (
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_walk_cmd,
    get_cmd,
    usm3DESEDEPrivProtocol,
    usmAesBlumenthalCfb192Protocol,
    usmAesBlumenthalCfb256Protocol,
    usmAesCfb128Protocol,
    usmAesCfb192Protocol,
    usmAesCfb256Protocol,
    usmDESPrivProtocol,
    usmHMAC128SHA224AuthProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC256SHA384AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
    usmNoAuthProtocol,
    usmNoPrivProtocol,
)

AUTH = {
    "NONE": usmNoAuthProtocol,
    "MD5": usmHMACMD5AuthProtocol,
    "SHA": usmHMACSHAAuthProtocol,
    "SHA224": usmHMAC128SHA224AuthProtocol,
    "SHA256": usmHMAC192SHA256AuthProtocol,
    "SHA384": usmHMAC256SHA384AuthProtocol,
    "SHA512": usmHMAC384SHA512AuthProtocol,
}

# pysnmp calls the Blumenthal variants "Blumenthal" and the Reeder (Cisco)
# ones plain usmAesCfb192/256.
PRIV = {
    "NONE": usmNoPrivProtocol,
    "DES": usmDESPrivProtocol,
    "3DES": usm3DESEDEPrivProtocol,
    "AES128": usmAesCfb128Protocol,
    "AES192": usmAesBlumenthalCfb192Protocol,
    "AES256": usmAesBlumenthalCfb256Protocol,
    "AES192C": usmAesCfb192Protocol,
    "AES256C": usmAesCfb256Protocol,
}


def render(vb):
    oid, val = vb
    t = val.__class__.__name__
    if t in ("NoSuchObject", "NoSuchInstance", "EndOfMibView"):
        return [str(oid), t, None]
    if isinstance(val, rfc1902.IpAddress):
        return [str(oid), "IpAddress", ".".join(str(b) for b in val.asNumbers())]
    if isinstance(val, rfc1902.Opaque):
        return [str(oid), "Opaque", bytes(val.asOctets()).hex()]
    if isinstance(val, univ.OctetString):
        return [str(oid), "OctetString", bytes(val.asOctets()).hex()]
    if isinstance(val, univ.ObjectIdentifier):
        return [str(oid), "ObjectIdentifier", str(val)]
    return [str(oid), t, int(val)]


async def run(engine, host, port, job):
    out = {"user": job["user"], "error": None, "get": [], "walk": []}
    user = UsmUserData(
        job["user"],
        authKey=job.get("auth_key"),
        privKey=job.get("priv_key"),
        authProtocol=AUTH[job.get("auth", "NONE")],
        privProtocol=PRIV[job.get("priv", "NONE")],
    )
    target = await UdpTransportTarget.create((host, port), timeout=3, retries=2)
    ctx = ContextData(contextName=job.get("context", ""))
    if job.get("get"):
        err, status, index, vbs = await get_cmd(
            engine,
            user,
            target,
            ctx,
            *[ObjectType(ObjectIdentity(o)) for o in job["get"]],
            lookupMib=False,
        )
        if err or status:
            out["error"] = str(err or status.prettyPrint())
            return out
        out["get"] = [render(vb) for vb in vbs]
    if job.get("walk"):
        async for err, status, index, vbs in bulk_walk_cmd(
            engine,
            user,
            target,
            ctx,
            0,
            25,
            ObjectType(ObjectIdentity(job["walk"])),
            lexicographicMode=False,
            lookupMib=False,
        ):
            if err or status:
                out["error"] = str(err or status.prettyPrint())
                return out
            out["walk"].extend(render(vb) for vb in vbs)
    return out


async def main():
    req = json.load(sys.stdin)
    engine = SnmpEngine()
    results = await asyncio.gather(
        *[run(engine, req["host"], req["port"], j) for j in req["jobs"]]
    )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
