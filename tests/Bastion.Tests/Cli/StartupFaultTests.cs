using System.Net;
using System.Net.Sockets;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Cli;

/// <summary>
/// `bastion run` that cannot start says why in one line naming the part (listener, admin, access log) and exits 1,
/// never with a stack trace (a crash is exit 134 and a restart loop under systemd); `check` sees what it can.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class StartupFaultTests
{
    static string Config(string yaml, string? dir = null)
    {
        dir ??= Scratch.NewDir("fault");
        var path = Path.Combine(dir, "bastion.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    static void OneLineExit1(ProcResult r, string expected)
    {
        Assert.True(r.ExitCode == 1, r.ToString());
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, r.ToString());
        Assert.StartsWith("bastion: cannot start: ", lines[0]);
        Assert.Contains(expected, lines[0]);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public async Task A_busy_port_names_the_listener_of_every_kind_and_the_admin()
    {
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        int busy = ((IPEndPoint)squatter.LocalEndpoint).Port;
        var cases = new[]
        {
            ($"listeners: [{{ name: fwd, type: http-proxy, listen: 127.0.0.1:{busy} }}]", $"listener 'fwd': cannot listen on 127.0.0.1:{busy}: Address already in use"),
            ($"listeners: [{{ name: site, type: http-reverse, listen: 127.0.0.1:{busy}, routes: [{{ upstream: \"http://127.0.0.1:9\" }}] }}]",
                $"listener 'site': cannot listen on 127.0.0.1:{busy}: Address already in use"),
            ($"listeners: [{{ name: db, type: tcp, listen: 127.0.0.1:{busy}, upstream: \"127.0.0.1:9\" }}]", $"listener 'db': cannot listen on 127.0.0.1:{busy}"),
            ($"admin: {{ listen: 127.0.0.1:{busy} }}\nlisteners: [{{ name: fwd, type: http-proxy, listen: 127.0.0.1:0 }}]", $"admin: cannot listen on 127.0.0.1:{busy}: Address already in use"),
        };
        foreach (var (yaml, expected) in cases)
            OneLineExit1(await Proc.BastionAsync(["run", "--no-watch", "-c", Config(yaml)]), expected);
    }

    [Fact]
    public async Task An_access_log_that_cannot_be_written_stops_run_with_one_line_and_check_reports_it()
    {
        var dir = Scratch.NewDir("fault");
        // A file where the log's folder should be: no user, root included, can create the log under it.
        File.WriteAllText(Path.Combine(dir, "notadir"), "");
        var yaml = "logging: { access: notadir/access.log }\nlisteners: [{ name: fwd, type: http-proxy, listen: 127.0.0.1:0 }]\n";
        var path = Config(yaml, dir);
        OneLineExit1(await Proc.BastionAsync(["run", "--no-watch", "-c", path]), $"cannot open access log {dir}/notadir/access.log");

        var check = await Proc.BastionAsync(["check", "-c", path]);
        Assert.True(check.ExitCode == 2, check.ToString());
        Assert.Contains($"{path}:1:20: logging.access: {dir}/notadir is a file, not a directory", check.Stdout);
    }

    [Fact]
    public async Task Permissions_are_judged_as_the_service_user()
    {
        // Root-owned 755 folders: the unprivileged user can read the configuration but not write the log.
        var dir = Scratch.NewDir("fault");
        var yaml = "logging: { access: logs/access.log }\nlisteners: [{ name: fwd, type: http-proxy, listen: 127.0.0.1:0 }]\n";
        var path = Config(yaml, dir);
        if (!Unprivileged.IsRoot) return; // the folders are the test user's own: nothing to deny
        var check = await Unprivileged.BastionAsync("check", "-c", path);
        Assert.True(check.ExitCode == 2, check.ToString());
        Assert.Contains($"logging.access: directory {dir}/logs does not exist and {dir} is not writable by this user", check.Stdout);

        Directory.CreateDirectory(Path.Combine(dir, "logs"));
        check = await Unprivileged.BastionAsync("check", "-c", path);
        Assert.Contains($"logging.access: directory {dir}/logs is not writable by this user", check.Stdout);
        var run = await Unprivileged.BastionAsync("run", "--no-watch", "-c", path);
        OneLineExit1(run, $"cannot open access log {dir}/logs/access.log: Permission denied");

        // The same folder made writable: check passes and says nothing about the log.
        File.SetUnixFileMode(Path.Combine(dir, "logs"), (UnixFileMode)0b111_111_111);
        check = await Unprivileged.BastionAsync("check", "-c", path);
        Assert.True(check.ExitCode == 0, check.ToString());
    }

    [Fact]
    public async Task An_unreadable_or_broken_certificate_names_the_listener()
    {
        var dir = Scratch.NewDir("fault");
        var (cert, key) = TestCerts.WritePem(dir, "site", TestCerts.Localhost());
        File.WriteAllText(key, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
        var yaml = $"listeners:\n  - name: site\n    type: http-reverse\n    listen: 127.0.0.1:0\n    tls: {{ cert: site.crt, key: site.key }}\n    routes: [{{ upstream: \"http://127.0.0.1:9\" }}]\n";
        var path = Config(yaml, dir);
        var run = await Proc.BastionAsync(["run", "--no-watch", "-c", path]);
        OneLineExit1(run, "listener 'site': ");
        var check = await Proc.BastionAsync(["check", "-c", path]);
        Assert.True(check.ExitCode == 2, check.ToString());
        Assert.Contains($"{path}:5:10: listener 'site': certificate {cert} with key {key}:", check.Stdout);

        if (!Unprivileged.IsRoot) return;
        TestCerts.WritePem(dir, "site", TestCerts.Localhost());
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        check = await Unprivileged.BastionAsync("check", "-c", path);
        Assert.Contains($"listener 'site': cannot read key {key}: Permission denied", check.Stdout);
        OneLineExit1(await Unprivileged.BastionAsync("run", "--no-watch", "-c", path), $"listener 'site': ");
    }
}
