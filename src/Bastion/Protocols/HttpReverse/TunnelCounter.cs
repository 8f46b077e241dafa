using Microsoft.AspNetCore.Http.Features;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// Counts what crosses an upgraded (WebSocket) connection each way, so that the tunnel's closing log line carries
/// its bytes: stands in for Kestrel's upgrade feature and wraps the stream it hands to the forwarder.
/// </summary>
sealed class TunnelCounter(IHttpUpgradeFeature inner) : IHttpUpgradeFeature
{
    public long FromClient, ToClient;

    public bool IsUpgradableRequest => inner.IsUpgradableRequest;

    public async Task<Stream> UpgradeAsync() => new Counted(await inner.UpgradeAsync().ConfigureAwait(false), this);

    sealed class Counted(Stream s, TunnelCounter c) : Stream
    {
        public override bool CanRead => s.CanRead;
        public override bool CanSeek => false;
        public override bool CanWrite => s.CanWrite;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
        {
            int n = await s.ReadAsync(buffer, ct).ConfigureAwait(false);
            Interlocked.Add(ref c.FromClient, n);
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
            ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = s.Read(buffer, offset, count);
            Interlocked.Add(ref c.FromClient, n);
            return n;
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
        {
            Interlocked.Add(ref c.ToClient, buffer.Length);
            return s.WriteAsync(buffer, ct);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
            WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();

        public override void Write(byte[] buffer, int offset, int count)
        {
            Interlocked.Add(ref c.ToClient, count);
            s.Write(buffer, offset, count);
        }

        public override Task FlushAsync(CancellationToken ct) => s.FlushAsync(ct);
        public override void Flush() => s.Flush();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) s.Dispose();
            base.Dispose(disposing);
        }

        public override ValueTask DisposeAsync() => s.DisposeAsync();
    }
}
