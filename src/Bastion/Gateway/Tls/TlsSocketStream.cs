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
public sealed class TlsSocketStream(Socket socket, ReadOnlyMemory<byte> prefix = default) : Stream
{
    ReadOnlyMemory<byte> _prefix = prefix;

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        if (buffer.IsEmpty) return ValueTask.FromResult(0);
        if (_prefix.IsEmpty)
        {
            var t = socket.ReceiveAsync(buffer, SocketFlags.None, ct);
            return t.IsCompletedSuccessfully ? t : Received(t);
        }
        int n = Math.Min(buffer.Length, _prefix.Length);
        _prefix.Span[..n].CopyTo(buffer.Span);
        _prefix = _prefix[n..];
        return ValueTask.FromResult(n);
    }

    /// <summary>Waits for a receive; socket errors come out as IOException, as NetworkStream's do (SslStream's callers catch those).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    static async ValueTask<int> Received(ValueTask<int> t)
    {
        try { return await t.ConfigureAwait(false); }
        catch (SocketException e) { throw new IOException(e.Message, e); }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
        ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        if (count == 0) return 0;
        if (_prefix.IsEmpty)
        {
            try { return socket.Receive(buffer, offset, count, SocketFlags.None); }
            catch (SocketException e) { throw new IOException(e.Message, e); }
        }
        int n = Math.Min(count, _prefix.Length);
        _prefix.Span[..n].CopyTo(buffer.AsSpan(offset));
        _prefix = _prefix[n..];
        return n;
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

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
        WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        try { socket.Send(buffer, offset, count, SocketFlags.None); }
        catch (SocketException e) { throw new IOException(e.Message, e); }
    }
    public override Task FlushAsync(CancellationToken ct) => Task.CompletedTask;
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
