# Shared by scripts/demo and scripts/check: make ./.venv with pyevs and its tools installed.
# Works on a fresh Debian machine with only python3: installs python3-venv when it is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$here/.venv"
py=${PYTHON:-python3}

ensure_venv() {
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import evs, pytest, cryptography' 2>/dev/null; then
    if ! "$py" -m venv "$venv" 2>/dev/null; then
      echo "python3 -m venv failed; installing python3-venv (needs root)" >&2
      rm -rf "$venv"
      if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >&2
      else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv >&2; fi
      "$py" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q -e "$here[dev]" >&2
  fi
}

# The integration tests run real executives in private network namespaces (ip netns) and
# make partitions and loss with nftables, and evs bench's test caps links with tc: install
# iproute2 and nftables when missing (needs root, as CI has).
ensure_net_tools() {
  local missing=()
  # tc (evs bench --shape) comes with iproute2, like ip
  { command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1; } || missing+=(iproute2)
  command -v nft >/dev/null 2>&1 || missing+=(nftables)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "installing ${missing[*]} for the network tests" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 ||
        { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; }
    else
      echo "note: ${missing[*]} missing and not root: network namespace tests will be skipped" >&2
    fi
  fi
}
