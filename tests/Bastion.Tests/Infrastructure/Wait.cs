using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Bastion.Tests.Infrastructure;

/// <summary>Waiting on conditions with a deadline, never on a fixed sleep.</summary>
public static class Wait
{
    public static async Task<T> ForAsync<T>(Func<(bool Done, T Value)> probe, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        var delay = 5;
        while (true)
        {
            var (done, value) = probe();
            if (done) return value;
            if (sw.Elapsed > timeout) throw new TimeoutException($"timed out after {timeout.TotalSeconds:0.#}s waiting for {what}");
            await Task.Yield();
            using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(delay));
            await tick.WaitForNextTickAsync();
            delay = Math.Min(delay * 2, 100);
        }
    }

    public static Task UntilAsync(Func<bool> condition, TimeSpan timeout, string what) =>
        ForAsync(() => (condition(), true), timeout, what);

    /// <summary>Waits until something accepts TCP connections on the port.</summary>
    public static async Task ForPortAsync(int port, TimeSpan timeout, string host = "127.0.0.1")
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                await s.ConnectAsync(IPAddress.Parse(host), port, cts.Token);
                return;
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                if (sw.Elapsed > timeout) throw new TimeoutException($"nothing listens on {host}:{port} after {timeout.TotalSeconds:0.#}s");
                using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
                await tick.WaitForNextTickAsync();
            }
        }
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
