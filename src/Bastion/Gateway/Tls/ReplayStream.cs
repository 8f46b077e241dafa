namespace Bastion.Gateway.Tls;

/// <summary>
/// A client transport whose first bytes were already read (the ClientHello peeked to decide a tunnel, or what the
/// PROXY header reader buffered past the header): reads return those first, then the inner stream's. Writes go
/// straight through.
/// </summary>
public sealed class ReplayStream(ReadOnlyMemory<byte> prefix, Stream inner) : PrefixedStream(prefix)
{
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) =>
        TryReplay(buffer.Span, out int n) ? ValueTask.FromResult(n) : inner.ReadAsync(buffer, ct);

    public override int Read(byte[] buffer, int offset, int count) =>
        TryReplay(buffer.AsSpan(offset, count), out int n) ? n : inner.Read(buffer, offset, count);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default) => inner.WriteAsync(buffer, ct);
    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
    public override Task FlushAsync(CancellationToken ct) => inner.FlushAsync(ct);
    public override void Flush() => inner.Flush();

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }

    public override ValueTask DisposeAsync() => inner.DisposeAsync();
}
