using Bastion.Gateway;
using Bastion.Protocols.Http.Io;

namespace Bastion.Protocols.Http.Engine;

/// <summary>
/// Bytes both ways between two peers after an upgrade (WebSocket), through the peers' own buffers (what each had
/// buffered goes first). Two plain sockets with nothing buffered use the socket pump; otherwise two loops, an end of
/// stream passed on as a half-close, the idle timeout over both directions.
/// </summary>
public static class DuplexRelay
{
    public static async Task RunAsync(Peer client, Peer upstream, TimeSpan idle, Action<long, long> counter)
    {
        if (client.Io.Socket is { } cs && upstream.Io.Socket is { } us && client.Io.Tls is null && upstream.Io.Tls is null)
        {
            ReadOnlyMemory<byte> fromClient = client.Count > 0 ? client.Data.ToArray() : default;
            ReadOnlyMemory<byte> toClient = upstream.Count > 0 ? upstream.Data.ToArray() : default;
            client.Clear();
            upstream.Clear();
            client.Io.Detach();
            upstream.Io.Detach();
            await SocketRelay.RunAsync(cs, us, idle, counter, fromClient, toClient).ConfigureAwait(false);
            return;
        }
        var watch = new IdleStop(client.Io, upstream.Io);
        Deadlines.Add(watch);
        try
        {
            watch.ExpireIn(idle);
            var a = Pump(client, upstream.Io, watch, idle, n => counter(n, 0));
            var b = Pump(upstream, client.Io, watch, idle, n => counter(0, n));
            var first = await Task.WhenAny(a, b).ConfigureAwait(false);
            // A failure in one direction ends both; a clean end of stream waits for the other side.
            if (!await first.ConfigureAwait(false)) watch.Stop();
            await Task.WhenAll(a, b).ConfigureAwait(false);
        }
        finally { Deadlines.Remove(watch); }
    }

    /// <summary>True on a clean end of stream (passed on as a half-close), false on a failure.</summary>
    static async Task<bool> Pump(Peer from, Duplex to, IdleStop watch, TimeSpan idle, Action<long> count)
    {
        try
        {
            while (true)
            {
                if (from.Count > 0)
                {
                    int n = from.Count;
                    await to.SendAsync(from.DataMemory(n)).ConfigureAwait(false);
                    from.Consume(n);
                    count(n);
                    watch.ExpireIn(idle);
                }
                int got = await from.ReceiveAsync().ConfigureAwait(false);
                if (got <= 0)
                {
                    await to.ShutdownSendAsync().ConfigureAwait(false);
                    return got == 0;
                }
                watch.ExpireIn(idle);
            }
        }
        catch (Exception e) when (Duplex.IsIoError(e)) { return false; }
    }

    sealed class IdleStop(Duplex a, Duplex b) : Expiring
    {
        protected internal override void Expired() => Stop();

        public void Stop()
        {
            a.Abort();
            b.Abort();
        }
    }
}
