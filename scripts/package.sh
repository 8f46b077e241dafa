#!/usr/bin/env bash
# Builds what an operator installs:
#   OUT/bastion                     self-contained single-file linux-x64 executable (ReadyToRun; no .NET needed)
#   OUT/bastion_VERSION_amd64.deb   Debian package built with dpkg-deb: /usr/bin/bastion, the systemd unit
#                                   (Type=notify), sysusers, logrotate, /etc/bastion/bastion.yaml, man page bastion(1)
# usage: scripts/package.sh [--out DIR]      (default DIR: artifacts/package)
# Needs: the .NET 10 SDK (runtime packs come from NuGet on the first run), dpkg-deb, pandoc (apt-get install pandoc).
set -euo pipefail
cd "$(dirname "$0")/.."

out=artifacts/package
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for tool in dotnet dpkg-deb pandoc gzip; do
  command -v "$tool" >/dev/null || { echo "package.sh: needs $tool (apt-get install ${tool/dpkg-deb/dpkg})" >&2; exit 1; }
done

version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' src/Bastion/Bastion.csproj | head -1)
publish=artifacts/publish/linux-x64
mkdir -p "$out"

# Composite ReadyToRun (the SDK's default for self-contained) would recompile the whole framework (~5 CPU minutes);
# the framework assemblies are ReadyToRun already, so only ours and our packages' are compiled here.
echo "package.sh: publishing bastion $version (linux-x64, self-contained, single file, ReadyToRun)"
dotnet publish src/Bastion/Bastion.csproj -c Release -r linux-x64 --self-contained -nologo -v:q \
  -p:PublishSingleFile=true -p:PublishReadyToRun=true -p:PublishReadyToRunComposite=false -p:DebugType=none \
  -o "$publish"
install -m 0755 "$publish/bastion" "$out/bastion"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -D -m 0755 "$publish/bastion" "$root/usr/bin/bastion"
install -D -m 0644 deploy/bastion.service "$root/usr/lib/systemd/system/bastion.service"
install -D -m 0644 deploy/bastion.sysusers.conf "$root/usr/lib/sysusers.d/bastion.conf"
install -D -m 0644 deploy/bastion.logrotate "$root/etc/logrotate.d/bastion"
install -D -m 0644 deploy/bastion.yaml "$root/etc/bastion/bastion.yaml"
install -d -m 0755 "$root/usr/share/man/man1" "$root/usr/share/doc/bastion/examples"
sed "s/@VERSION@/$version/" docs/bastion.1.md | pandoc --standalone --from markdown --to man -o "$root/usr/share/man/man1/bastion.1"
gzip -9n "$root/usr/share/man/man1/bastion.1"
install -m 0644 README.md $(ls docs/*.md | grep -v "bastion.1.md") "$root/usr/share/doc/bastion/"
install -m 0644 examples/* "$root/usr/share/doc/bastion/examples/"
printf 'Bastion %s\nBuilt from %s.\n' "$version" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" \
  > "$root/usr/share/doc/bastion/copyright"

install -d -m 0755 "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" deploy/debian/control > "$root/DEBIAN/control"
install -m 0644 deploy/debian/conffiles "$root/DEBIAN/conffiles"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$root/DEBIAN/"
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/md5sums"

deb="$out/bastion_${version}_amd64.deb"
# zstd: a tenth of xz's time for a 100 MB executable; dpkg reads it since Debian 12 (what .NET 10 needs anyway).
dpkg-deb --root-owner-group -Zzstd -z10 --build "$root" "$deb" >/dev/null
echo "package.sh: $out/bastion and $deb ($(du -h "$deb" | cut -f1))"
