namespace Bastion.Protocols.Smtp;

/// <summary>
/// The client's stream with bytes already read from it in front: what a message's last large read took past the
/// end of data (commands of a pipelining client). Read ahead of the stream, never written; not disposed with it.
/// </summary>
sealed class LeftoverStream(ReadOnlyMemory<byte> leftover, Stream inner) : Stream
{
    ReadOnlyMemory<byte> _left = leftover;

    /// <summary>Leftover bytes not yet read (STARTTLS counts them as pipelined plaintext).</summary>
    public int Remaining => _left.Length;

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        if (_left.IsEmpty || buffer.IsEmpty) return inner.ReadAsync(buffer, ct);
        int n = Math.Min(buffer.Length, _left.Length);
        _left.Span[..n].CopyTo(buffer.Span);
        _left = _left[n..];
        return ValueTask.FromResult(n);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
        ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override bool CanRead => true;
    public override bool CanWrite => false;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
