#!/usr/bin/env bash
# Install the Debian packages some tests need, once, before pytest (the tests never install anything):
#   orthanc, orthanc-dicomweb  a real local PACS for the DICOMweb tests (tests/tools/test_pacs_orthanc.py)
#   dicom3tools                dciodvfy, the reference validator for the exported SEG and SR
#   chromium                   /usr/bin/chromium, the browser Playwright drives in tests/ui/test_browser*.py
# Idempotent: when all are installed it changes nothing and needs no network. Where apt cannot be used
# (not Debian, or neither root nor password-less sudo) it says so and exits 0: the tests that need the
# packages then skip, naming this script. A failed apt-get is an error (exit 1).
set -euo pipefail

PACKAGES=(orthanc orthanc-dicomweb dicom3tools chromium)

installed() {  # a removed package keeps a "deinstall ok config-files" entry, so check the full status
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_test_services: not a Debian system (no dpkg/apt-get); the Orthanc, dciodvfy and browser" \
         "tests will skip" >&2
    exit 0
fi

missing=()
for package in "${PACKAGES[@]}"; do
    installed "$package" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install_test_services: ${PACKAGES[*]} already installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "install_test_services: ${missing[*]} missing and apt-get needs root (or password-less sudo);" \
         "the tests that need them will skip" >&2
    exit 0
fi

echo "install_test_services: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
for package in "${missing[@]}"; do
    installed "$package" || { echo "install_test_services: $package is still not installed" >&2; exit 1; }
done
echo "install_test_services: done"
