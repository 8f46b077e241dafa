using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Bastion.Gateway.Tls;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Tls;

/// <summary>
/// Real ClientHellos as test vectors, made fresh by each run: a local socket takes what a real client (openssl
/// s_client, curl) sends first, until the parser has a whole hello, then hangs up.
/// </summary>
public static class HelloCapture
{
    public static async Task<byte[]> CaptureAsync(Func<int, Task<ProcResult>> client)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var run = client(port);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var s = await listener.AcceptSocketAsync(cts.Token);
        var bytes = new List<byte>();
        var buf = new byte[4096];
        while (true)
        {
            int n = await s.ReceiveAsync(buf, SocketFlags.None, cts.Token);
            if (n == 0) break;
            bytes.AddRange(buf.AsSpan(0, n));
            var status = ClientHelloParser.TryParse(new ReadOnlySequence<byte>(bytes.ToArray()), out _, out _);
            if (status != HelloStatus.NeedMore) break;
        }
        s.Close(0);
        await run;
        return [.. bytes];
    }

    public static Task<byte[]> OpenSslAsync(params string[] extra) =>
        CaptureAsync(port => Proc.RunAsync("openssl", ["s_client", "-connect", $"127.0.0.1:{port}", .. extra], TimeSpan.FromSeconds(20), stdin: ""));

    public static Task<byte[]> CurlAsync(string host, params string[] extra) =>
        CaptureAsync(port => Proc.CurlAsync([.. extra, "--connect-to", $"{host}:443:127.0.0.1:{port}", $"https://{host}/"]));
}
