using Bastion.Protocols.Http.Codec;
using Bastion.Protocols.Http.Io;

namespace Bastion.Protocols.Http.Upstream;

/// <summary>
/// One connection to an upstream server, plain or TLS: its peer (duplex and receive buffer) and the response head
/// it parses into, both reused for every exchange while the connection lives in its pool.
/// </summary>
public sealed class UpstreamConnection : Expiring
{
    internal UpstreamConnection(UpstreamPool pool, Duplex io)
    {
        Pool = pool;
        Peer = new Peer(io);
        Deadlines.Add(this);
    }

    public UpstreamPool Pool { get; }
    public Peer Peer { get; }
    public ResponseHead Response { get; } = new();

    /// <summary>Taken from the idle pool (it may have been closed by the server meanwhile).</summary>
    public bool Reused { get; internal set; }

    /// <summary>Exchanges served so far.</summary>
    public int Uses { get; internal set; }

    internal long IdleSince;
    int _closed;

    /// <summary>The deadline passed (response timeout, idle timeout): the connection was aborted.</summary>
    public bool TimedOut { get; private set; }

    protected internal override void Expired()
    {
        TimedOut = true;
        Peer.Io.Abort();
    }

    /// <summary>Stops any transfer at once (a failed client body, a late response rule).</summary>
    public void Abort() => Peer.Io.Abort();

    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    public async ValueTask CloseAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        Deadlines.Remove(this);
        await Peer.Io.DisposeAsync().ConfigureAwait(false);
        Peer.Release();
        Pool.Closed();
    }
}
