using System.Net;
using System.Net.Sockets;

namespace Bastion.Protocols.Ftp;

/// <summary>
/// One side of the next transfer's data connection, as PASV/EPSV or PORT/EPRT set it up. Passive: the gateway
/// listens and takes the first connection from the one address allowed (the client's, or the server's), once;
/// connections from anywhere else are reported and closed. Active: the gateway connects to a checked address.
/// The listener closes after the data timeout, after its one connection, or when the channel is disposed.
/// </summary>
public sealed class FtpDataChannel : IAsyncDisposable
{
    readonly Socket? _listener;
    readonly IPEndPoint? _target;
    readonly Task<Socket?>? _accepted;
    readonly CancellationTokenSource _cts = new();
    Socket? _taken;
    int _disposed;

    FtpDataChannel(Socket? listener, IPEndPoint? target, IPAddress? allowed, TimeSpan timeout, Action<IPEndPoint>? onForeign)
    {
        _listener = listener;
        _target = target;
        if (listener is not null)
        {
            _cts.CancelAfter(timeout);
            _accepted = AcceptAsync(listener, allowed!, onForeign, _cts.Token);
        }
    }

    /// <summary>The gateway listens (the client's PASV/EPSV, or the server in active mode); otherwise it connects.</summary>
    public bool Listens => _listener is not null;

    /// <summary>The port a listening channel listens on.</summary>
    public int Port => ((IPEndPoint)_listener!.LocalEndPoint!).Port;

    /// <summary>Listens for one connection from <paramref name="allowed"/> within <paramref name="timeout"/>.</summary>
    public static FtpDataChannel Listen(Socket listener, IPAddress allowed, TimeSpan timeout, Action<IPEndPoint>? onForeign) =>
        new(listener, null, allowed, timeout, onForeign);

    /// <summary>Connects to <paramref name="target"/> when the transfer starts.</summary>
    public static FtpDataChannel Connect(IPEndPoint target) => new(null, target, null, default, null);

    /// <summary>A connection already made (towards a passive server, before the transfer command).</summary>
    public static FtpDataChannel Connected(Socket socket) => new(null, null, null, default, null) { _ready = socket };

    Socket? _ready;

    static async Task<Socket?> AcceptAsync(Socket listener, IPAddress allowed, Action<IPEndPoint>? onForeign, CancellationToken ct)
    {
        try
        {
            while (true)
            {
                var s = await listener.AcceptAsync(ct).ConfigureAwait(false);
                var from = (IPEndPoint)s.RemoteEndPoint!;
                if (FtpAddress.SameHost(from.Address, allowed))
                {
                    s.NoDelay = true;
                    return s;
                }
                // Someone else raced for the port (data connection hijacking): refused, and the port stays for the client.
                try { s.Close(0); } catch (ObjectDisposedException) { }
                onForeign?.Invoke(from);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            return null;
        }
        finally
        {
            // Only once: whatever happened, nothing more is accepted on this port.
            try { listener.Dispose(); } catch (ObjectDisposedException) { }
        }
    }

    /// <summary>
    /// The connected socket: the accepted one (waiting up to the channel's timeout), or a new connection to the
    /// active target from <paramref name="localAddress"/>. The caller owns the socket.
    /// </summary>
    public async Task<(Socket? Socket, string? Error)> OpenAsync(IPAddress localAddress, TimeSpan timeout, CancellationToken ct)
    {
        if (_ready is not null)
        {
            _taken = _ready;
            return (_ready, null);
        }
        if (_accepted is not null)
        {
            Socket? s;
            try { s = await _accepted.WaitAsync(ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { return (null, "cancelled"); }
            if (s is null) return (null, "no data connection came in time");
            _taken = s;
            return (s, null);
        }
        var target = _target!;
        var local = target.AddressFamily == AddressFamily.InterNetwork && localAddress.IsIPv4MappedToIPv6 ? localAddress.MapToIPv4() : localAddress;
        var socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            if (local.AddressFamily == target.AddressFamily) socket.Bind(new IPEndPoint(local, 0));
            await socket.ConnectAsync(target, cts.Token).ConfigureAwait(false);
            socket.NoDelay = true;
            _taken = socket;
            return (socket, null);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            return (null, e is OperationCanceledException ? $"connecting to {target} timed out" : $"connecting to {target}: {((SocketException)e).SocketErrorCode}");
        }
    }

    /// <summary>Closes the listener and a connection that was accepted but never handed out.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try { _cts.Cancel(); } catch (ObjectDisposedException) { }
        try { _listener?.Dispose(); } catch (ObjectDisposedException) { }
        if (_accepted is not null)
        {
            var s = await _accepted.ConfigureAwait(false);
            if (s is not null && !ReferenceEquals(s, _taken)) s.Dispose();
        }
        if (_ready is not null && !ReferenceEquals(_ready, _taken)) _ready.Dispose();
        _cts.Dispose();
    }
}
