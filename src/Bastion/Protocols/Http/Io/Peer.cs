using System.Buffers;

namespace Bastion.Protocols.Http.Io;

/// <summary>
/// One end the gateway talks to (a client or an upstream server): its <see cref="Duplex"/> and the bytes received
/// from it but not used yet, in one buffer owned for the connection's life (pooled, returned on <see cref="Release"/>).
/// Parsers read <see cref="Data"/>; what they take is <see cref="Consume"/>d; the rest (a body, the next request)
/// stays for the next step.
/// </summary>
public sealed class Peer(Duplex io, int bufferSize = Peer.DefaultBufferSize)
{
    public const int DefaultBufferSize = 16 * 1024;

    byte[] _buf = ArrayPool<byte>.Shared.Rent(bufferSize);
    int _start, _end;

    public Duplex Io { get; } = io;

    /// <summary>Bytes received and not consumed.</summary>
    public int Count => _end - _start;

    public ReadOnlySpan<byte> Data => _buf.AsSpan(_start, _end - _start);

    /// <summary>The same bytes, writable: the chunked decoder rewrites them in place.</summary>
    public Span<byte> DataSpan => _buf.AsSpan(_start, _end - _start);

    public ReadOnlyMemory<byte> DataMemory(int length) => _buf.AsMemory(_start, length);

    public int Capacity => _buf.Length;

    /// <summary>Total bytes received over the connection's life.</summary>
    public long Total { get; private set; }

    public void Consume(int n)
    {
        _start += n;
        if (_start == _end) _start = _end = 0;
    }

    /// <summary>Adds bytes read elsewhere (what a PROXY header reader left in a pipe) after what is buffered.</summary>
    public void Append(ReadOnlySpan<byte> bytes)
    {
        if (_buf.Length - _end < bytes.Length)
        {
            Compact();
            if (_buf.Length - _end < bytes.Length) Grow(_end + bytes.Length);
        }
        bytes.CopyTo(_buf.AsSpan(_end));
        _end += bytes.Length;
    }

    /// <summary>Drops everything buffered.</summary>
    public void Clear() => _start = _end = 0;

    /// <summary>
    /// Receives more after what is buffered (moving it to the front first when the buffer's end is reached).
    /// Returns the count, 0 at the end of the stream, -1 when the buffer is full of unconsumed bytes.
    /// </summary>
    public ValueTask<int> ReceiveAsync()
    {
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
        if (_start == _end) _start = _end = before;
        int room = _buf.Length - after - _end;
        if (room <= 0) return new ValueTask<int>(-1);
        return Io.ReceiveIntoAsync(_buf.AsMemory(_end, room), this);
    }

    /// <summary>The underlying array and where the data starts (for framing in place).</summary>
    public byte[] Array => _buf;
    public int Start => _start;

    public void Release()
    {
        var b = Interlocked.Exchange(ref _buf, []);
        if (b.Length > 0) ArrayPool<byte>.Shared.Return(b);
        _start = _end = 0;
    }
}
