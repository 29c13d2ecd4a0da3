# Shared by the scripts (sourced, not run).

# Installs Debian packages (as root, or through sudo), updating the package lists once if the
# first attempt fails (a fresh machine may have none).
apt_install() {
  local sudo_=""
  [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || { $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
