#!/usr/bin/python3
"""Writes an image's Debian packages, as `dpkg-query` lists them from the image's own dpkg
database, as a table and as an SPDX 2.3 SBOM (JSON, one package per installed Debian package,
with its purl), for scripts/build-image.sh.

  image_sbom.py --dpkg-query LISTING --image NAME:TAG --revision SHA --tsv OUT.tsv --spdx OUT.json

LISTING: `dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\t\
${Installed-Size}\t${source:Package}\n'`; only installed packages ("ii") are kept.
"""

import argparse
import datetime
import json
import re
import uuid


def installed_packages(listing):
    """[{Package, Version, Architecture, Installed-Size, Source}] of installed packages."""
    packages = []
    for line in listing.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or fields[0].strip() != "ii":
            continue
        packages.append(dict(zip(("Package", "Version", "Architecture", "Installed-Size",
                                  "Source"), fields[1:])))
    return sorted(packages, key=lambda p: p["Package"])


def purl(p):
    arch = p.get("Architecture", "all")
    return (f"pkg:deb/debian/{p['Package']}@{p['Version']}?arch={arch}&distro=debian-12")


def spdx_id(name):
    return "SPDXRef-Package-deb-" + re.sub(r"[^A-Za-z0-9.-]", "-", name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpkg-query", required=True, dest="listing")
    parser.add_argument("--image", required=True)
    parser.add_argument("--revision", default="unknown")
    parser.add_argument("--tsv", required=True)
    parser.add_argument("--spdx", required=True)
    args = parser.parse_args()
    with open(args.listing, encoding="utf-8") as f:
        packages = installed_packages(f.read())
    if not packages:
        raise SystemExit(f"{args.listing}: no installed packages")

    with open(args.tsv, "w", encoding="utf-8") as f:
        f.write("package\tversion\tarchitecture\tinstalled_kib\tsource\n")
        for p in packages:
            source = (p.get("Source") or p["Package"]).split()[0]
            f.write(f"{p['Package']}\t{p['Version']}\t{p.get('Architecture', '')}\t"
                    f"{p.get('Installed-Size', '')}\t{source}\n")

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    image_id = "SPDXRef-Image"
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": args.image,
        "documentNamespace": f"https://example.com/spdx/{args.image.replace(':', '-')}-"
                             f"{uuid.uuid4()}",
        "creationInfo": {"created": now,
                         "creators": ["Tool: copilot-gateway scripts/image_sbom.py"]},
        "packages": [{
            "SPDXID": image_id,
            "name": args.image,
            "versionInfo": args.revision,
            "downloadLocation": "NOASSERTION",
            "primaryPackagePurpose": "CONTAINER",
        }] + [{
            "SPDXID": spdx_id(p["Package"]),
            "name": p["Package"],
            "versionInfo": p["Version"],
            "downloadLocation": "NOASSERTION",
            "supplier": "Organization: Debian",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER",
                              "referenceType": "purl", "referenceLocator": purl(p)}],
        } for p in packages],
        "relationships": [{"spdxElementId": "SPDXRef-DOCUMENT",
                           "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id}] + [
            {"spdxElementId": image_id, "relationshipType": "CONTAINS",
             "relatedSpdxElement": spdx_id(p["Package"])} for p in packages],
    }
    with open(args.spdx, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
