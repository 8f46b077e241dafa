using System.Net.Sockets;
using System.Text;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Cli;

/// <summary>
/// `Type=notify`: systemd names a datagram socket in NOTIFY_SOCKET; the gateway says READY=1 once every listener is
/// bound, RELOADING=1 then READY=1 around a reload, STOPPING=1 when it begins to drain. The test plays systemd.
/// </summary>
public sealed class SystemdNotifyTests
{
    [Fact]
    public async Task Ready_reloading_and_stopping_reach_the_notify_socket()
    {
        var dir = Scratch.NewDir("notify");
        var socketPath = Path.Combine(dir, "notify.sock");
        using var systemd = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        systemd.Bind(new UnixDomainSocketEndPoint(socketPath));
        var cfg = Path.Combine(dir, "bastion.yaml");
        File.WriteAllText(cfg, "listeners: [{ name: web, type: http-proxy, listen: 127.0.0.1:0 }]\n");

        await using var p = Proc.Start("dotnet", [Proc.BastionDll, "run", "--no-watch", "-c", cfg],
            env: new Dictionary<string, string> { ["NOTIFY_SOCKET"] = socketPath });

        var ready = await Receive(systemd);
        Assert.Contains("READY=1\n", ready);
        Assert.Contains("STATUS=1 listener(s) up, configuration generation 1", ready);
        Assert.Contains($"MAINPID={p.Process.Id}", ready);
        Assert.Contains("listening on 127.0.0.1:", p.Output); // READY came after the listeners were bound

        var hup = await Proc.RunAsync("kill", ["-HUP", p.Process.Id.ToString()]);
        Assert.Equal(0, hup.ExitCode);
        var reloading = await Receive(systemd);
        Assert.StartsWith("RELOADING=1\nMONOTONIC_USEC=", reloading);
        var again = await Receive(systemd);
        Assert.Contains("READY=1\n", again);
        Assert.Contains("configuration generation 2", again);

        await Proc.RunAsync("kill", ["-TERM", p.Process.Id.ToString()]);
        Assert.StartsWith("STOPPING=1\n", await Receive(systemd));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await p.Process.WaitForExitAsync(cts.Token);
        Assert.Equal(0, p.Process.ExitCode);
    }

    static async Task<string> Receive(Socket s)
    {
        var buf = new byte[4096];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        int n = await s.ReceiveAsync(buf, SocketFlags.None, cts.Token);
        return Encoding.UTF8.GetString(buf, 0, n);
    }
}
