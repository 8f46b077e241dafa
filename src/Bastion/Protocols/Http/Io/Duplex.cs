using System.Runtime.CompilerServices;
using System.Net.Security;
using System.Net.Sockets;
using Bastion.Gateway;

namespace Bastion.Protocols.Http.Io;

/// <summary>
/// A connection's bytes both ways, without pipes: receive into the caller's buffer, send from it. A plain socket
/// (the fast path: its operations complete inline on the socket engine's threads) or a stream (TLS). No operation
/// takes a cancellation token, which would register with it on every call: timeouts shut the socket down instead
/// (<see cref="Deadlines"/>), which wakes whatever is pending.
/// </summary>
public abstract class Duplex : IAsyncDisposable
{
    /// <summary>The socket under it (for shutdowns and addresses).</summary>
    public abstract Socket? Socket { get; }

    /// <summary>The TLS stream, when the connection is TLS.</summary>
    public virtual SslStream? Tls => null;

    /// <summary>Reads what is there (at least one byte), or 0 at the end of the stream.</summary>
    public abstract ValueTask<int> ReceiveAsync(Memory<byte> buffer);

    /// <summary>
    /// Receives for <paramref name="peer"/> (its counters move when the result is taken). A plain socket does it with
    /// no async layer in between; others wait here. An empty <paramref name="buffer"/> with a peer: the receive takes
    /// the peer's buffer (<see cref="Peer.ReceiveMemory"/>) when it reads; the epoll engine waits for readiness
    /// without one, the others rent it now.
    /// </summary>
    internal virtual ValueTask<int> ReceiveIntoAsync(Memory<byte> buffer, Peer? peer)
    {
        if (buffer.IsEmpty && peer is not null) buffer = peer.ReceiveMemory();
        var t = ReceiveAsync(buffer);
        if (peer is null) return t;
        if (t.IsCompletedSuccessfully)
        {
            int n = t.Result;
            peer.Received(n);
            return new ValueTask<int>(n);
        }
        return Await(t, peer);

        [AsyncMethodBuilder(typeof(PooledBuilder<>))]
        static async ValueTask<int> Await(ValueTask<int> t, Peer peer)
        {
            int n = await t.ConfigureAwait(false);
            peer.Received(n);
            return n;
        }
    }

    /// <summary>Sends all of it.</summary>
    public abstract ValueTask SendAsync(ReadOnlyMemory<byte> data);

    /// <summary>Half-close: nothing more will be sent (TLS close_notify first).</summary>
    public abstract ValueTask ShutdownSendAsync();

    /// <summary>Wakes a pending receive with an end of stream, leaving sending possible (to answer 408).</summary>
    public void ShutdownReceive()
    {
        try { Socket?.Shutdown(SocketShutdown.Receive); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        Woken();
    }

    /// <summary>Closes at once; pending operations fail.</summary>
    public void Abort()
    {
        try { Socket?.Close(0); }
        catch (ObjectDisposedException) { }
        Woken();
    }

    /// <summary>After a shutdown or close from elsewhere: an engine whose waits a close does not end ends them here.</summary>
    protected virtual void Woken() { }

    /// <summary>
    /// Hands the socket back to .NET's own engine (a CONNECT or WebSocket relay takes it next): called with nothing
    /// pending, and at the connection's end.
    /// </summary>
    public virtual void Detach() { }

    public abstract ValueTask DisposeAsync();

    /// <summary>The exceptions a vanished or aborted peer causes (as opposed to bugs).</summary>
    public static bool IsIoError(Exception e) =>
        e is SocketException or IOException or ObjectDisposedException or OperationCanceledException
            or System.Security.Authentication.AuthenticationException or InvalidOperationException;

    /// <summary>A plain socket: on the epoll engine unless it is switched off (<see cref="EpollEngine"/>).</summary>
    public static Duplex Over(Socket s) => EpollEngine.Enabled ? new EpollDuplex(s) : new SocketDuplex(s);

    /// <summary>
    /// A plain connection to the first of <paramref name="addresses"/> that answers, on the engine <see cref="Over(Socket)"/>
    /// picks: the epoll engine connects without blocking and registers the socket once; .NET's otherwise.
    /// </summary>
    public static async Task<(Duplex? Io, ConnectResult Result)> ConnectAsync(IReadOnlyList<System.Net.IPAddress> addresses, int port,
        TimeSpan timeout, CancellationToken ct)
    {
        if (EpollEngine.Enabled)
        {
            var (epoll, error, message) = await EpollEngine.ConnectAsync(addresses, port, timeout, ct).ConfigureAwait(false);
            return (epoll, new ConnectResult(epoll?.Socket, error, message));
        }
        var r = await Connector.ConnectAsync(addresses, port, timeout, ct).ConfigureAwait(false);
        return (r.Ok ? new SocketDuplex(r.Socket!) : null, r);
    }

    public static Duplex Over(Stream s, Socket? socket) => new StreamDuplex(s, socket);
}

sealed class SocketDuplex(Socket socket) : Duplex
{
    // One reusable operation per direction, owned for the connection's life (SocketOperation).
    readonly SocketOperation _receive = new(), _send = new();

    public override Socket Socket => socket;

    public override ValueTask<int> ReceiveAsync(Memory<byte> buffer) => ReceiveIntoAsync(buffer, null);

    internal override ValueTask<int> ReceiveIntoAsync(Memory<byte> buffer, Peer? peer)
    {
        if (buffer.IsEmpty && peer is not null) buffer = peer.ReceiveMemory();
        if (_receive.TryBegin()) return _receive.ReceiveAsync(socket, buffer, peer);
        return base.ReceiveIntoAsync(buffer, peer);
    }

    public override ValueTask SendAsync(ReadOnlyMemory<byte> data)
    {
        // Stream sockets send everything or fail; the returned count needs no loop.
        var t = _send.TryBegin() ? _send.SendAsync(socket, data) : socket.SendAsync(data, SocketFlags.None);
        if (t.IsCompletedSuccessfully)
        {
            t.GetAwaiter().GetResult();
            return ValueTask.CompletedTask;
        }
        return Await(t);

        [AsyncMethodBuilder(typeof(PooledBuilder))]
        static async ValueTask Await(ValueTask<int> t) => await t.ConfigureAwait(false);
    }

    public override ValueTask ShutdownSendAsync()
    {
        try { socket.Shutdown(SocketShutdown.Send); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        return ValueTask.CompletedTask;
    }

    public override ValueTask DisposeAsync()
    {
        try { socket.Dispose(); }
        catch (ObjectDisposedException) { }
        // An operation still in flight is completed (aborted) by the close; the arguments free themselves after it.
        _receive.Dispose();
        _send.Dispose();
        return ValueTask.CompletedTask;
    }
}

sealed class StreamDuplex(Stream stream, Socket? socket) : Duplex
{
    public override Socket? Socket => socket;

    public override SslStream? Tls => stream as SslStream;

    public override ValueTask<int> ReceiveAsync(Memory<byte> buffer) => stream.ReadAsync(buffer);

    public override ValueTask SendAsync(ReadOnlyMemory<byte> data) => stream.WriteAsync(data);

    public override async ValueTask ShutdownSendAsync()
    {
        try
        {
            if (stream is SslStream ssl) await ssl.ShutdownAsync().ConfigureAwait(false);
            socket?.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (IsIoError(e) || e is NotSupportedException) { }
    }

    public override async ValueTask DisposeAsync()
    {
        try { await stream.DisposeAsync().ConfigureAwait(false); }
        catch (Exception e) when (IsIoError(e)) { }
        try { socket?.Dispose(); }
        catch (ObjectDisposedException) { }
    }
}
