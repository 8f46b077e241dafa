namespace Bastion.Gateway.Tls;

/// <summary>
/// The transport under an SslStream whose first bytes may have been read already (a peeked ClientHello, what a
/// PROXY header reader buffered): reads hand those out first (<see cref="TryReplay"/>), then the transport's own.
/// </summary>
public abstract class PrefixedStream(ReadOnlyMemory<byte> prefix) : Stream
{
    ReadOnlyMemory<byte> _prefix = prefix;

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <summary>Copies buffered first bytes into <paramref name="into"/>; false when none are left.</summary>
    protected bool TryReplay(Span<byte> into, out int n)
    {
        n = 0;
        if (_prefix.IsEmpty) return false;
        n = Math.Min(into.Length, _prefix.Length);
        _prefix.Span[..n].CopyTo(into);
        _prefix = _prefix[n..];
        return true;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
        ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
        WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
