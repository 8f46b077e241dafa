using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Bastion.Tests.Infrastructure;

/// <summary>
/// Plain TCP servers on 127.0.0.1 (or ::1), port 0, for relay tests. Echo: sends back everything it reads and,
/// after the client's end of stream, shuts down its own side (so half-close can be observed). Capture: keeps
/// every connection's bytes until the peer closes, for looking at what the gateway sent first.
/// </summary>
public sealed class TcpServer : IAsyncDisposable
{
    readonly Socket _listen;
    readonly CancellationTokenSource _stop = new();
    readonly Task _loop;
    public int Port { get; }
    public int Accepted;
    /// <summary>Capture mode: each connection's bytes, in order of arrival (completed at the peer's end of stream).</summary>
    public ConcurrentQueue<byte[]> Captured { get; } = new();

    TcpServer(IPAddress address, Func<Socket, CancellationToken, Task> handler)
    {
        _listen = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _listen.Bind(new IPEndPoint(address, 0));
        _listen.Listen(512);
        Port = ((IPEndPoint)_listen.LocalEndPoint!).Port;
        _loop = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket s;
                try { s = await _listen.AcceptAsync(_stop.Token); }
                catch (Exception) { break; }
                Interlocked.Increment(ref Accepted);
                _ = Task.Run(async () =>
                {
                    using (s)
                    {
                        try { await handler(s, _stop.Token); }
                        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException) { }
                    }
                });
            }
        });
    }

    public static TcpServer Echo(IPAddress? address = null) => new(address ?? IPAddress.Loopback, async (s, ct) =>
    {
        var buf = new byte[64 * 1024];
        int n;
        while ((n = await s.ReceiveAsync(buf, SocketFlags.None, ct)) > 0)
            await s.SendAsync(buf.AsMemory(0, n), SocketFlags.None, ct);
        s.Shutdown(SocketShutdown.Send);
    });

    /// <summary>Reads everything until end of stream, then answers the SHA-256 (hex) and length, and closes.</summary>
    public static TcpServer HashSink() => new(IPAddress.Loopback, async (s, ct) =>
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buf = new byte[64 * 1024];
        long len = 0;
        int n;
        while ((n = await s.ReceiveAsync(buf, SocketFlags.None, ct)) > 0)
        {
            h.AppendData(buf, 0, n);
            len += n;
        }
        await s.SendAsync(System.Text.Encoding.ASCII.GetBytes($"{Convert.ToHexStringLower(h.GetHashAndReset())} {len}\n"), SocketFlags.None, ct);
        s.Shutdown(SocketShutdown.Send);
    });

    public static TcpServer Capture()
    {
        TcpServer? self = null;
        self = new TcpServer(IPAddress.Loopback, async (s, ct) =>
        {
            var ms = new MemoryStream();
            var buf = new byte[4096];
            int n;
            while ((n = await s.ReceiveAsync(buf, SocketFlags.None, ct)) > 0) ms.Write(buf, 0, n);
            self!.Captured.Enqueue(ms.ToArray());
            s.Shutdown(SocketShutdown.Send);
        });
        return self;
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listen.Dispose();
        await _loop;
    }
}
