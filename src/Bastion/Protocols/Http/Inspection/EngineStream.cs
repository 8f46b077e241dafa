using System.Runtime.CompilerServices;
using Bastion.Gateway.Tls;
using Bastion.Protocols.Http.Io;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// The transport under an inspected tunnel's SslStream when the socket stays on the gateway's own epoll engine
/// (<see cref="EpollEngine"/>) instead of going back to .NET's: a receive that drained the socket waits for the next
/// edge rather than trying again and getting EAGAIN, and no second engine watches the socket. SslStream's zero-byte
/// reads (before each record it has not buffered) return at once, as in <see cref="TlsSocketStream"/>. Continuations
/// run on the engine's loop thread, like the plain-socket HTTP path's. The stream does not own the duplex.
/// </summary>
/// <remarks>
/// The engine's operations take no token: a cancellable read or write (the handshakes' timeouts) that has to wait
/// shuts the socket's receiving side or closes it when the token fires, and then reports the cancellation. Reads and
/// writes of the data phase pass no token and cost nothing for it. Socket errors come out as SocketException, which
/// SslStream wraps in IOException for its callers.
/// </remarks>
sealed class EngineStream(Duplex io, ReadOnlyMemory<byte> prefix = default) : PrefixedStream(prefix)
{
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        if (buffer.IsEmpty) return ValueTask.FromResult(0);
        if (TryReplay(buffer.Span, out int n)) return ValueTask.FromResult(n);
        var t = io.ReceiveAsync(buffer);
        return t.IsCompleted || !ct.CanBeCanceled ? t : ReceiveCancellable(t, ct);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    async ValueTask<int> ReceiveCancellable(ValueTask<int> t, CancellationToken ct)
    {
        int n;
        using (ct.UnsafeRegister(static d => ((Duplex)d!).ShutdownReceive(), io))
        {
            try { n = await t.ConfigureAwait(false); }
            catch when (ct.IsCancellationRequested) { n = 0; }
        }
        ct.ThrowIfCancellationRequested();
        return n;
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
    {
        var t = io.SendAsync(buffer);
        return t.IsCompleted || !ct.CanBeCanceled ? t : SendCancellable(t, ct);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    async ValueTask SendCancellable(ValueTask t, CancellationToken ct)
    {
        using (ct.UnsafeRegister(static d => ((Duplex)d!).Abort(), io))
        {
            try { await t.ConfigureAwait(false); }
            catch when (ct.IsCancellationRequested) { }
        }
        ct.ThrowIfCancellationRequested();
    }

    public override Task FlushAsync(CancellationToken ct) => Task.CompletedTask;
    public override void Flush() { }

    // SslStream is only used through its async methods here; a blocking call would stall the engine's loop.
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("synchronous read on the epoll engine");
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("synchronous write on the epoll engine");
}
