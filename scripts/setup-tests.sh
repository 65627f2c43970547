#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian/Ubuntu x86_64 machine.
#  - system packages for the tests that use real components: headless Chromium (monitor page),
#    OpenSSH server (deploy), C and C++ compilers (firmware framing code and sketch);
#  - the project with its train, device, hubert and dev extras, torch pinned to the local CPU build
#    by constraints/x86-cpu.txt (Jetson users install differently: export/JETSON.md).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}"; }; then
    echo "warning: could not install ${need_apt[*]}; the tests that need them will be skipped with a reason" >&2
  fi
fi

mkdir -p /run/sshd 2>/dev/null || true  # sshd refuses to start without its privilege-separation dir
python3 -m pip install -q -c constraints/x86-cpu.txt -e ".[train,device,hubert,dev]"
# Development real PPG recordings (signals.dev_recordings) ship as data files of biosignalsnotebooks;
# only its files are read, so it is installed without its (heavy, notebook-only) dependencies.
python3 -m pip install -q --no-deps "biosignalsnotebooks==0.6.14"
