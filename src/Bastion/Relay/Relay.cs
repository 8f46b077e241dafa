using System.Buffers;
using System.Net.Sockets;

namespace Bastion.Relay;

/// <summary>Byte counts of a finished relay, as seen from the client: in = client → upstream.</summary>
public readonly record struct RelayResult(long BytesFromClient, long BytesToClient, bool IdleTimedOut);

/// <summary>
/// The one bidirectional byte pump (CONNECT tunnels, SOCKS, TCP, FTP data, upgraded HTTP). Each direction
/// copies through one pooled buffer; an end-of-stream from one side is passed on as a half-close (shutdown of
/// the send side) so the other direction keeps flowing until it ends too. An idle timeout closes both.
/// </summary>
public static class SocketRelay
{
    const int BufferSize = 64 * 1024;

    /// <param name="client">The client's socket.</param>
    /// <param name="upstream">The server's socket.</param>
    /// <param name="onBytes">Called with (fromClient, toClient) deltas as data moves; used for live counters.</param>
    public static async Task<RelayResult> RunAsync(Socket client, Socket upstream, TimeSpan idleTimeout,
        Action<long, long>? onBytes = null, CancellationToken ct = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var idle = new IdleWatch(idleTimeout, cts);
        var up = Pump(client, upstream, idle, onBytes, fromClient: true, cts.Token);
        var down = Pump(upstream, client, idle, onBytes, fromClient: false, cts.Token);
        using (IdleSweeper.Register(idle))
        {
            // When one direction fails (reset, abort), stop the other too.
            var first = await Task.WhenAny(up, down).ConfigureAwait(false);
            if (first.Result.Failed) cts.Cancel();
            await Task.WhenAll(up, down).ConfigureAwait(false);
        }
        return new RelayResult(up.Result.Bytes, down.Result.Bytes, idle.TimedOut);
    }

    readonly record struct PumpResult(long Bytes, bool Failed);

    static async Task<PumpResult> Pump(Socket from, Socket to, IdleWatch idle, Action<long, long>? onBytes, bool fromClient, CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        long total = 0;
        try
        {
            while (true)
            {
                int n = await from.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, ct).ConfigureAwait(false);
                if (n == 0)
                {
                    // Half-close: tell the other side we are done sending, keep the other direction open.
                    try { to.Shutdown(SocketShutdown.Send); } catch (SocketException) { } catch (ObjectDisposedException) { }
                    return new PumpResult(total, false);
                }
                idle.Touch();
                int sent = 0;
                while (sent < n)
                    sent += await to.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None, ct).ConfigureAwait(false);
                total += n;
                idle.Touch();
                onBytes?.Invoke(fromClient ? n : 0, fromClient ? 0 : n);
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            return new PumpResult(total, true);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}

/// <summary>Last-activity time of one relay; the sweeper cancels it when idle too long.</summary>
public sealed class IdleWatch(TimeSpan timeout, CancellationTokenSource cts)
{
    long _last = Environment.TickCount64;
    readonly long _timeoutMs = (long)timeout.TotalMilliseconds;
    public bool TimedOut { get; private set; }

    public void Touch() => Volatile.Write(ref _last, Environment.TickCount64);

    internal void Check(long now)
    {
        if (_timeoutMs > 0 && now - Volatile.Read(ref _last) > _timeoutMs && !cts.IsCancellationRequested)
        {
            TimedOut = true;
            try { cts.Cancel(); } catch (ObjectDisposedException) { }
        }
    }
}

/// <summary>
/// One timer for every relay's idle timeout: touching a timestamp per chunk is cheaper than re-arming a
/// timer per read.
/// </summary>
public static class IdleSweeper
{
    static readonly HashSet<IdleWatch> Watches = [];
    static readonly Timer Tick = new(_ => Sweep(), null, 1000, 1000);

    public static IDisposable Register(IdleWatch w)
    {
        lock (Watches) Watches.Add(w);
        return new Registration(w);
    }

    static void Sweep()
    {
        IdleWatch[] all;
        lock (Watches) all = [.. Watches];
        long now = Environment.TickCount64;
        foreach (var w in all) w.Check(now);
    }

    sealed class Registration(IdleWatch w) : IDisposable
    {
        public void Dispose()
        {
            lock (Watches) Watches.Remove(w);
            GC.KeepAlive(Tick);
        }
    }
}
