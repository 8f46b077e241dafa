using System.Text.Json;
using Bastion.Tests.Admin;
using Bastion.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Bastion.Tests.Packaging;

/// <summary>
/// scripts/package.sh builds the self-contained executable and the .deb; dpkg installs it into a scratch root (its
/// maintainer scripts create the user and give it its folders); the installed tree then runs the unit's
/// ExecStartPre and ExecStart lines verbatim, as the unit's user, chrooted into that root, in private network and
/// mount namespaces (so the shipped configuration's fixed ports and /var/log paths touch nothing of this machine),
/// says READY=1 on a notify socket, and forwards a request to an origin.
/// </summary>
public sealed class PackageTests(ITestOutputHelper output)
{
    // Runs inside `unshare --net --mount`: $1 = the installed root, $2 = a folder for results.
    const string Smoke = """
        set -eu
        R="$1"; OUT="$2"
        ip link set lo up
        mount --make-rprivate /
        # The host's libraries inside the installed tree (the .deb depends on libc6, libstdc++6, libssl...).
        mkdir -p "$R/proc" "$R/dev" "$R/sys" "$R/tmp" "$R/run" "$R/usr/lib/x86_64-linux-gnu" "$R/usr/lib64"
        ln -sfn usr/lib "$R/lib"; ln -sfn usr/lib64 "$R/lib64"; chmod 1777 "$R/tmp"
        mount --rbind /dev "$R/dev"; mount -t proc proc "$R/proc"; mount --rbind /sys "$R/sys"
        mount --bind /usr/lib/x86_64-linux-gnu "$R/usr/lib/x86_64-linux-gnu"; mount --bind /usr/lib64 "$R/usr/lib64"
        # The origin: the shipped policy lets local networks reach web ports only, so it listens on 80.
        mkdir -p "$OUT/www"; echo "hello from the origin" > "$OUT/www/index.html"
        python3 -m http.server 80 --bind 127.0.0.1 --directory "$OUT/www" >"$OUT/origin.out" 2>&1 &
        origin=$!
        # systemd's side of Type=notify: a datagram socket the service user may write to. It says "ready" on a
        # FIFO once bound and waits 60 s at most for the gateway's datagram.
        mkfifo "$OUT/ready"
        python3 -c "
        import os, socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777)
        print('ready', flush=True); s.settimeout(60)
        open(sys.argv[2] + '.tmp', 'wb').write(s.recv(4096)); os.rename(sys.argv[2] + '.tmp', sys.argv[2])
        " "$R/run/notify" "$OUT/notify.out" >"$OUT/ready" &
        notifier=$!
        unit="$R/usr/lib/systemd/system/bastion.service"
        user=$(sed -n 's/^User=//p' "$unit"); group=$(sed -n 's/^Group=//p' "$unit")
        uid=$(awk -F: -v n="$user" '$1 == n { print $3 }' "$R/etc/passwd")
        gid=$(awk -F: -v n="$group" '$1 == n { print $3 }' "$R/etc/group")
        pre=$(sed -n 's/^ExecStartPre=//p' "$unit"); start=$(sed -n 's/^ExecStart=//p' "$unit")
        timeout 30 head -n 1 "$OUT/ready" >/dev/null || true   # the notify socket is bound (30 s at most)
        chroot --userspec="$uid:$gid" "$R" $pre >"$OUT/check.out" 2>&1 || echo "check failed: $?" >>"$OUT/check.out"
        NOTIFY_SOCKET=/run/notify chroot --userspec="$uid:$gid" "$R" $start >"$OUT/run.out" 2>&1 &
        gw=$!
        wait $notifier || true   # READY=1 received, or the notifier's 60 s deadline passed
        curl -q -sS --max-time 20 -x http://127.0.0.1:3128 http://127.0.0.1/ >"$OUT/curl.out" 2>&1 || true
        curl -q -sS --max-time 20 http://127.0.0.1:9090/healthz >"$OUT/health.out" 2>&1 || true
        kill -TERM $gw; rc=0; wait $gw || rc=$?; echo "$rc" >"$OUT/exit.out"
        kill $origin
        """;

    [Fact]
    public async Task The_deb_installs_and_its_unit_serves_a_request()
    {
        if (!Unprivileged.IsRoot)
        {
            // xunit 2 has no dynamic skip: say so in the test's output and pass.
            output.WriteLine("SKIPPED: the package test needs root (dpkg --root, chroot, private namespaces)");
            return;
        }
        var dir = Scratch.NewDir("pkg");
        var out_ = Path.Combine(dir, "out");
        var build = await Proc.RunAsync(Path.Combine(Repo.Root, "scripts", "package.sh"), ["--out", out_], TimeSpan.FromMinutes(15));
        Assert.True(build.ExitCode == 0, build.ToString());
        var deb = Directory.GetFiles(out_, "bastion_*_amd64.deb").Single();

        // The standalone executable runs where it was built, without `dotnet`.
        var version = await Proc.RunAsync(Path.Combine(out_, "bastion"), ["--version"]);
        Assert.Matches(@"^bastion \d+\.\d+\.\d+", version.Stdout);

        var contents = (await Proc.RunAsync("dpkg-deb", ["--contents", deb])).Stdout;
        foreach (var f in new[] { "-rwxr-xr-x root/root .* ./usr/bin/bastion", "./usr/lib/systemd/system/bastion.service", "./usr/lib/sysusers.d/bastion.conf",
                     "./etc/logrotate.d/bastion", "./etc/bastion/bastion.yaml", "./usr/share/man/man1/bastion.1.gz" })
            Assert.Matches(f, contents);
        var conffiles = (await Proc.RunAsync("dpkg-deb", ["--ctrl-tarfile", deb])).ExitCode;
        Assert.Equal(0, conffiles);

        // dpkg itself installs it, maintainer scripts included (they honour DPKG_ROOT).
        var root = Path.Combine(dir, "root");
        Directory.CreateDirectory(Path.Combine(root, "var/lib/dpkg/info"));
        Directory.CreateDirectory(Path.Combine(root, "var/lib/dpkg/updates"));
        File.WriteAllText(Path.Combine(root, "var/lib/dpkg/status"), "");
        var install = await Proc.RunAsync("dpkg", [$"--root={root}", "--force-script-chrootless", "--force-depends", "--log=/dev/null", "-i", deb], TimeSpan.FromMinutes(5));
        Assert.True(install.ExitCode == 0, install.ToString());
        var status = await Proc.RunAsync("dpkg-query", [$"--admindir={root}/var/lib/dpkg", "-W", "-f=${Status} ${Conffiles}", "bastion"]);
        Assert.Contains("install ok installed", status.Stdout);
        Assert.Contains("/etc/bastion/bastion.yaml", status.Stdout);
        Assert.Matches(@"(?m)^bastion:x:\d+:\d+:", File.ReadAllText(Path.Combine(root, "etc/passwd")));
        var modes = await Proc.RunAsync("stat", ["-c", "%n %a %U", Path.Combine(root, "var/log/bastion"), Path.Combine(root, "etc/bastion/bastion.yaml")]);
        Assert.Contains("/var/log/bastion 750 ", modes.Stdout);
        Assert.Contains("/etc/bastion/bastion.yaml 640 root", modes.Stdout);

        // The unit and the logrotate snippet are valid for this machine's systemd and logrotate; the man page renders.
        var unit = Path.Combine(dir, "bastion.service");
        File.WriteAllText(unit, File.ReadAllText(Path.Combine(root, "usr/lib/systemd/system/bastion.service")).Replace("/usr/bin/bastion", Path.Combine(root, "usr/bin/bastion")));
        var verify = await Proc.RunAsync("systemd-analyze", ["verify", "--man=no", unit]);
        Assert.True(verify.ExitCode == 0 && verify.Stderr.Trim().Length == 0, verify.ToString());
        Assert.Contains("Type=notify", File.ReadAllText(unit));
        var rotate = await Proc.RunAsync("logrotate", ["-d", "-s", Path.Combine(dir, "logrotate.state"), Path.Combine(root, "etc/logrotate.d/bastion")]);
        Assert.True(rotate.ExitCode == 0, rotate.ToString());
        var man = await Proc.RunAsync("sh", ["-c", $"zcat {root}/usr/share/man/man1/bastion.1.gz | groff -man -ww -Tutf8 -z"]);
        Assert.True(man.ExitCode == 0 && man.Stderr.Length == 0, man.ToString());

        // Run it as the unit does.
        var results = Path.Combine(dir, "results");
        Directory.CreateDirectory(results);
        var script = Path.Combine(dir, "smoke.sh");
        File.WriteAllText(script, Smoke);
        var smoke = await Proc.RunAsync("unshare", ["--net", "--mount", "--fork", "sh", script, root, results], TimeSpan.FromMinutes(3));
        string R(string name) => File.Exists(Path.Combine(results, name)) ? File.ReadAllText(Path.Combine(results, name)) : $"({name} missing)";
        var what = $"{smoke}\ncheck: {R("check.out")}\nrun: {R("run.out")}\nnotify: {R("notify.out")}\ncurl: {R("curl.out")}";
        Assert.True(smoke.ExitCode == 0, what);
        Assert.Equal("ok", R("check.out").Trim());
        Assert.Contains("READY=1", R("notify.out"));
        Assert.Equal("hello from the origin", R("curl.out").Trim());
        Assert.StartsWith("ok", R("health.out"));
        Assert.Equal("0", R("exit.out").Trim());
        Assert.Contains("bastion: stopped", R("run.out"));

        // The access log went where the shipped configuration says, inside the installed tree, owned by the user.
        var log = File.ReadAllLines(Path.Combine(root, "var/log/bastion/access.log"));
        var request = log.Select(l => JsonDocument.Parse(l).RootElement).First(e => e.GetProperty("event").GetString() == "request");
        Assert.Equal("GET http://127.0.0.1/", request.GetProperty("request").GetString());
        Assert.Equal("allow", request.GetProperty("verdict").GetString());
        Assert.Equal(200, request.GetProperty("status").GetInt32());
    }
}
