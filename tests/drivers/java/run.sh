#!/usr/bin/env bash
# pgjdbc checks against a running shardgate, per the contract of tests/drivers/run. Uses Debian's
# pgjdbc jar (libpostgresql-jdbc-java) and a JDK, installed with apt-get only when missing; one
# Java file compiled with plain javac (no Maven: its repository is not reachable here).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${DRIVERS_CACHE:?DRIVERS_CACHE must be set}/java
jar=/usr/share/java/postgresql.jar

apt_install() {
  apt-get install -y -qq "$@" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq "$@" >&2; }
}
if ! command -v javac >/dev/null; then
  echo "java: installing default-jdk-headless" >&2
  apt_install default-jdk-headless || { echo "java: cannot install a JDK" >&2; exit 1; }
fi
if [ ! -f "$jar" ]; then
  echo "java: installing libpostgresql-jdbc-java" >&2
  apt_install libpostgresql-jdbc-java || { echo "java: cannot install pgjdbc" >&2; exit 1; }
fi

mkdir -p "$cache/classes"
if [ ! -f "$cache/classes/DriverChecks.class" ] || [ "$here/DriverChecks.java" -nt "$cache/classes/DriverChecks.class" ]; then
  javac -Xlint:none -encoding UTF-8 -cp "$jar" -d "$cache/classes" "$here/DriverChecks.java" >&2 || {
    echo "java: javac failed" >&2; exit 1; }
fi
# Each check has its own timeout; this bounds a wedged JVM.
timeout 300 java -Dfile.encoding=UTF-8 -cp "$jar:$cache/classes" DriverChecks || {
  echo "java: checks did not finish (exit $?)" >&2; exit 1; }
