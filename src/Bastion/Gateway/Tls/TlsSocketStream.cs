using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Bastion.Gateway.Tls;

/// <summary>
/// The socket under an inspected tunnel's SslStream (either leg), in place of NetworkStream. SslStream does a
/// zero-byte read before every record it has not buffered (so that an idle connection holds no read buffer), and
/// on a socket that is a receive of its own (a one-byte MSG_PEEK): two receives per record. Here a zero-byte read
/// returns at once, so SslStream goes straight to the receive that brings the record: one system call per record
/// instead of two, at the price of SslStream keeping its read buffer (16 KiB) while the tunnel waits for the next
/// request. Optionally replays bytes already read (the ClientHello peeked to decide the tunnel) first.
/// </summary>
public sealed class TlsSocketStream(Socket socket, ReadOnlyMemory<byte> prefix = default) : PrefixedStream(prefix)
{
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        if (buffer.IsEmpty) return ValueTask.FromResult(0);
        if (TryReplay(buffer.Span, out int n)) return ValueTask.FromResult(n);
        var t = socket.ReceiveAsync(buffer, SocketFlags.None, ct);
        return t.IsCompletedSuccessfully ? t : Received(t);
    }

    /// <summary>Waits for a receive; socket errors come out as IOException, as NetworkStream's do (SslStream's callers catch those).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    static async ValueTask<int> Received(ValueTask<int> t)
    {
        try { return await t.ConfigureAwait(false); }
        catch (SocketException e) { throw new IOException(e.Message, e); }
    }

    public override int Read(byte[] buffer, int offset, int count)
    {
        if (count == 0) return 0;
        if (TryReplay(buffer.AsSpan(offset, count), out int n)) return n;
        try { return socket.Receive(buffer, offset, count, SocketFlags.None); }
        catch (SocketException e) { throw new IOException(e.Message, e); }
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
    {
        // A stream socket sends everything or fails.
        var t = socket.SendAsync(buffer, SocketFlags.None, ct);
        if (t.IsCompletedSuccessfully)
        {
            t.GetAwaiter().GetResult();
            return ValueTask.CompletedTask;
        }
        return Await(t);

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        static async ValueTask Await(ValueTask<int> t)
        {
            try { await t.ConfigureAwait(false); }
            catch (SocketException e) { throw new IOException(e.Message, e); }
        }
    }

    public override void Write(byte[] buffer, int offset, int count)
    {
        try { socket.Send(buffer, offset, count, SocketFlags.None); }
        catch (SocketException e) { throw new IOException(e.Message, e); }
    }
    public override Task FlushAsync(CancellationToken ct) => Task.CompletedTask;
    public override void Flush() { }
}
