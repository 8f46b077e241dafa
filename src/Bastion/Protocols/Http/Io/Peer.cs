using System.Buffers;

namespace Bastion.Protocols.Http.Io;

/// <summary>
/// One end the gateway talks to (a client or an upstream server): its <see cref="Duplex"/> and the bytes received
/// from it but not used yet. Parsers read <see cref="Data"/>; what they take is <see cref="Consume"/>d; the rest (a
/// body, the next request) stays for the next step. The buffer is held only while bytes are in it: it is rented
/// (pooled) when a receive is about to take bytes and given back as soon as everything is consumed, so a keep-alive
/// connection waiting for its next request, or an idle pooled upstream connection, holds none (as nginx frees its
/// buffers on idle keep-alive connections). On the epoll engine the receive waits for the socket's readiness with no
/// buffer and takes one only for the read itself.
/// </summary>
public sealed class Peer(Duplex io, int bufferSize = Peer.DefaultBufferSize)
{
    public const int DefaultBufferSize = 16 * 1024;

    byte[] _buf = [];
    int _start, _end;
    static long _held;

    /// <summary>Receive buffers held by all peers now (a measure of memory in flight; tests check that idle connections hold none).</summary>
    internal static long BuffersHeld => Interlocked.Read(ref _held);

    public Duplex Io { get; } = io;

    /// <summary>Bytes received and not consumed.</summary>
    public int Count => _end - _start;

    public ReadOnlySpan<byte> Data => _buf.AsSpan(_start, _end - _start);

    /// <summary>The same bytes, writable: the chunked decoder rewrites them in place.</summary>
    public Span<byte> DataSpan => _buf.AsSpan(_start, _end - _start);

    public ReadOnlyMemory<byte> DataMemory(int length) => _buf.AsMemory(_start, length);

    /// <summary>The buffer's size (the size it will have when none is held now).</summary>
    public int Capacity => _buf.Length == 0 ? bufferSize : _buf.Length;

    /// <summary>Whether a buffer is held now (bytes are in it, or a receive is taking some).</summary>
    public bool HoldsBuffer => _buf.Length > 0;

    /// <summary>Total bytes received over the connection's life.</summary>
    public long Total { get; private set; }

    public void Consume(int n)
    {
        _start += n;
        if (_start == _end) Park();
    }

    /// <summary>Adds bytes read elsewhere (what a PROXY header reader left in a pipe) after what is buffered.</summary>
    public void Append(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty) return;
        if (_buf.Length - _end < bytes.Length)
        {
            Compact();
            if (_buf.Length - _end < bytes.Length) Grow(_end + bytes.Length);
        }
        bytes.CopyTo(_buf.AsSpan(_end));
        _end += bytes.Length;
    }

    /// <summary>Drops everything buffered (and gives the buffer back).</summary>
    public void Clear() => Park();

    /// <summary>
    /// Receives more after what is buffered (moving it to the front first when the buffer's end is reached).
    /// Returns the count, 0 at the end of the stream, -1 when the buffer is full of unconsumed bytes.
    /// </summary>
    public ValueTask<int> ReceiveAsync()
    {
        // Nothing buffered: the duplex takes a buffer (ReceiveMemory) only when bytes are there to read.
        if (_buf.Length == 0) return Io.ReceiveIntoAsync(Memory<byte>.Empty, this);
        if (_end == _buf.Length)
        {
            if (_start == 0) return new ValueTask<int>(-1);
            Compact();
        }
        return Io.ReceiveIntoAsync(_buf.AsMemory(_end), this);
    }

    /// <summary>A receive into the free end of the buffer took <paramref name="n"/> bytes (called as its result is taken).</summary>
    internal void Received(int n)
    {
        _end += n;
        Total += n;
        if (_start == _end) Park();
    }

    /// <summary>
    /// Where a receive that was started with no buffer puts its bytes: a buffer is rented now (the duplex calls this
    /// when the socket is readable). A receive that then finds nothing gives it back through <see cref="Received"/>
    /// (0 bytes) or <see cref="ReceiveFailed"/>.
    /// </summary>
    internal Memory<byte> ReceiveMemory()
    {
        if (_buf.Length == 0) Take(bufferSize);
        return _buf.AsMemory(_end);
    }

    /// <summary>A receive into <see cref="ReceiveMemory"/> got nothing (would block, or failed): the buffer goes back if empty.</summary>
    internal void ReceiveFailed()
    {
        if (_start == _end) Park();
    }

    void Take(int size)
    {
        _buf = ArrayPool<byte>.Shared.Rent(size);
        _start = _end = 0;
        Interlocked.Increment(ref _held);
    }

    /// <summary>Nothing is buffered: the buffer goes back to the pool (the next receive rents one).</summary>
    void Park()
    {
        _start = _end = 0;
        var b = _buf;
        if (b.Length == 0) return;
        _buf = [];
        ArrayPool<byte>.Shared.Return(b);
        Interlocked.Decrement(ref _held);
    }

    void Compact()
    {
        int n = _end - _start;
        Buffer.BlockCopy(_buf, _start, _buf, 0, n);
        _start = 0;
        _end = n;
    }

    /// <summary>Makes the buffer at least <paramref name="size"/> bytes (a long head), keeping its contents.</summary>
    public void Grow(int size)
    {
        if (_buf.Length >= size) return;
        if (_buf.Length == 0)
        {
            Take(Math.Max(size, bufferSize));
            return;
        }
        var bigger = ArrayPool<byte>.Shared.Rent(size);
        Buffer.BlockCopy(_buf, _start, bigger, 0, _end - _start);
        _end -= _start;
        _start = 0;
        ArrayPool<byte>.Shared.Return(_buf);
        _buf = bigger;
    }

    /// <summary>
    /// Room for a chunk's size line before the buffered bytes and its CRLF after them (chunked encoding in place).
    /// Moves the bytes when needed.
    /// </summary>
    public void ReserveAround(int before, int after)
    {
        if (_start >= before && _buf.Length - _end >= after) return;
        int n = _end - _start;
        Buffer.BlockCopy(_buf, _start, _buf, before, n);
        _start = before;
        _end = before + n;
    }

    /// <summary>Receives into the buffer after <paramref name="before"/> bytes of room, keeping <paramref name="after"/> free at its end.</summary>
    public ValueTask<int> ReceiveFramedAsync(int before, int after)
    {
        if (_buf.Length == 0) Take(bufferSize);
        if (_start == _end) _start = _end = before;
        int room = _buf.Length - after - _end;
        if (room <= 0) return new ValueTask<int>(-1);
        return Io.ReceiveIntoAsync(_buf.AsMemory(_end, room), this);
    }

    /// <summary>The underlying array and where the data starts (for framing in place).</summary>
    public byte[] Array => _buf;
    public int Start => _start;

    /// <summary>The connection is done: the buffer, if one is held, goes back.</summary>
    public void Release()
    {
        var b = Interlocked.Exchange(ref _buf, []);
        _start = _end = 0;
        if (b.Length == 0) return;
        ArrayPool<byte>.Shared.Return(b);
        Interlocked.Decrement(ref _held);
    }
}
