using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Admin;

/// <summary>The files in deploy/ stay valid as the configuration language grows.</summary>
public sealed class DeployTests
{
    static string Deploy(string name) => Path.Combine(Repo.Root, "deploy", name);

    [Fact]
    public async Task Shipped_configurations_pass_check()
    {
        var r = await Proc.BastionAsync(["check", "-c", Deploy("bastion.yaml")]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("ok", r.Stdout);

        // The container's config needs its token secret; give it one where the test can write.
        var dir = Scratch.NewDir("deploy");
        var token = Path.Combine(dir, "token");
        await File.WriteAllTextAsync(token, "t0ken-0123456789abcdef\n");
        var docker = Path.Combine(dir, "docker.yaml");
        await File.WriteAllTextAsync(docker, (await File.ReadAllTextAsync(Deploy("docker.yaml"))).Replace("/run/secrets/bastion_admin_token", token));
        r = await Proc.BastionAsync(["check", "-c", docker]);
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    [Fact]
    public async Task Systemd_unit_is_sandboxed_and_reloads_with_sighup()
    {
        var unit = await File.ReadAllTextAsync(Deploy("bastion.service"));
        foreach (var line in new[] { "ProtectSystem=strict", "NoNewPrivileges=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                     "User=bastion", "ReadWritePaths=/var/log/bastion", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM" })
            Assert.Contains("\n" + line + "\n", unit);
        Assert.DoesNotContain("MemoryDenyWriteExecute=yes\n", unit.Replace("# Not set on purpose: MemoryDenyWriteExecute=yes", ""));
        var docker = await File.ReadAllTextAsync(Deploy("Dockerfile"));
        Assert.Contains("dotnet publish", docker);
        Assert.Contains("USER $APP_UID", docker);
    }
}
