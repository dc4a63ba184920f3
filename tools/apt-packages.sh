# Sourced by tools/setup.sh, tools/build-device.sh and tools/fuzz.sh: `ensure_packages WHO
# PACKAGE...` installs the Debian packages that are not installed yet (apt-get, through sudo
# when not root), saying which under the caller's name WHO. EQPM_BUILD_PACKAGES are what a
# build of eqpm needs (Open MPI: `mpirun eqpm train` across processes, tools/mpi-check.sh).
EQPM_BUILD_PACKAGES=(cmake ninja-build g++ libgtest-dev libbenchmark-dev librandom123-dev
                     libtomlplusplus-dev zlib1g-dev python3 python3-numpy python3-matplotlib
                     libopenmpi-dev openmpi-bin)

ensure_packages() {
  local who="$1"
  shift
  local missing=() p sudo_cmd=""
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "$who: installing ${missing[*]}" >&2
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
}
