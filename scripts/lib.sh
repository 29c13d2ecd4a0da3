# Shared by the scripts (sourced, not run).

# Installs Debian packages (as root, or through sudo), updating the package lists once if the
# first attempt fails (a fresh machine may have none).
apt_install() {
  local sudo_=""
  [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || { $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}

# The middle value of the numbers on standard input, separated by spaces or newlines (the mean
# of the two middle ones for an even count; `—` for none).
median() {
  tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) print "—"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
