using System.Buffers;
using System.Net.Sockets;

namespace Bastion.Gateway;

/// <summary>Byte counts of a finished relay, as seen from the client: in = client → upstream.</summary>
/// <param name="Cut">The relay ended because a side reset or failed (or it was stopped), not by the data's end: the
/// other side was only shut down, and a server that is still sending learns nothing from that.</param>
public readonly record struct RelayResult(long BytesFromClient, long BytesToClient, bool IdleTimedOut, bool Cut = false);

/// <summary>When a relay is over: when both directions have ended (a tunnel), or when the one that carries the data has (an FTP transfer).</summary>
public enum RelayEnd
{
    /// <summary>Both directions ended (each end of stream passed on as a half-close).</summary>
    BothDone,
    /// <summary>Client → upstream ended (an upload): its end of stream is passed on, then the other direction is stopped.</summary>
    ClientDone,
    /// <summary>Upstream → client ended (a download): its end of stream is passed on, then the other direction is stopped.</summary>
    UpstreamDone,
}

/// <summary>
/// The one bidirectional byte pump (CONNECT tunnels, SOCKS, TCP, FTP data, upgraded HTTP). Each direction
/// copies through one pooled buffer; an end-of-stream from one side is passed on as a half-close (shutdown of
/// the send side) so the other direction keeps flowing until it ends too. An idle timeout closes both.
/// </summary>
/// <remarks>
/// A direction that has carried <see cref="SpliceAfter"/> bytes is bulk (a download, an upload, a large body): on
/// Linux it switches to splice(2) through a kernel pipe (<see cref="SplicePipe"/>), which moves up to 1 MiB per call
/// without copying it through user memory. Short exchanges never pay for a pipe. Splice costs per fragment of the
/// source's packets, copying costs per byte: a source that arrives in page-sized (or smaller) fragments (a server's
/// sendfile(2), a NIC's receive pages) fills the pipe's slots before its bytes, and is then copied instead, through
/// one large buffer so that each system call moves what the socket holds (measured on a 1 GiB FTP download from
/// vsftpd: 845 ms/GiB spliced, 605 ms/GiB copied 4 MiB at a time). A one-way bulk transfer (an FTP data connection)
/// wakes the relay only for batches of 256 KiB (SO_RCVLOWAT), and an upload is always copied: the server on the
/// other side then reads a few large segments instead of curl's 32 KiB fragments page by page (measured: vsftpd
/// receiving 1 GiB spent 0.6 s of CPU behind the copying relay, as behind ftp-proxy, against 1.3-1.6 s spliced).
/// Socket operations run without a cancellation token: a cancellable receive registers with the token on every
/// call. Instead one registration per relay shuts both sockets down (cancellation, idle timeout, a reset in
/// either direction), which wakes any pending receive or send. Socket buffer sizes are left to the kernel:
/// setting SO_RCVBUF/SO_SNDBUF turns off Linux's autotuning, which does better on both loopback and WAN paths.
/// </remarks>
public static class SocketRelay
{
    const int BufferSize = 64 * 1024;
    /// <summary>The buffer of a bulk direction that copies: one system call moves up to this much.</summary>
    const int BulkBufferSize = 4 * 1024 * 1024;
    /// <summary>What a one-way bulk source holds before it wakes the relay.</summary>
    const int BulkLowWater = 256 * 1024;
    /// <summary>Bytes one direction copies before it switches to splice.</summary>
    internal const long SpliceAfter = 256 * 1024;
    /// <summary>Fills in a row that stopped at the pipe's slot count while the source held this much more: small fragments.</summary>
    const int SmallFragmentFills = 4, SmallFragmentBacklog = 64 * 1024;

    static long _copySwitches;

    /// <summary>Spliced directions that went back to copying because the source arrived in small fragments (for tests).</summary>
    internal static long CopySwitches => Interlocked.Read(ref _copySwitches);

    static long _blockedDrains;

    /// <summary>Times a spliced direction found the receiver's socket full and waited through the socket API (for tests).</summary>
    internal static long BlockedDrains => Interlocked.Read(ref _blockedDrains);

    /// <param name="client">The client's socket.</param>
    /// <param name="upstream">The server's socket.</param>
    /// <param name="onBytes">Called with (fromClient, toClient) deltas as data moves; used for live counters.</param>
    public static Task<RelayResult> RunAsync(Socket client, Socket upstream, TimeSpan idleTimeout,
        Action<long, long>? onBytes = null, CancellationToken ct = default) =>
        RunAsync(client, upstream, idleTimeout, onBytes, default, default, ct);

    /// <param name="clientPrefix">Bytes already read from the client (after a handshake) that go upstream first; counted as from the client.</param>
    /// <param name="upstreamPrefix">Bytes already read from the upstream that go to the client first; counted as to the client.</param>
    /// <param name="end">When the relay is over (<see cref="RelayEnd"/>).</param>
    public static async Task<RelayResult> RunAsync(Socket client, Socket upstream, TimeSpan idleTimeout,
        Action<long, long>? onBytes, ReadOnlyMemory<byte> clientPrefix, ReadOnlyMemory<byte> upstreamPrefix,
        CancellationToken ct = default, RelayEnd end = RelayEnd.BothDone)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var idle = new IdleWatch(idleTimeout, cts);
        var pair = new SocketPair(client, upstream);
        using var stop = cts.Token.UnsafeRegister(static p => ((SocketPair)p!).ShutdownBoth(), pair);
        var up = Pump(client, upstream, clientPrefix, idle, onBytes, fromClient: true, pair, oneWay: end == RelayEnd.ClientDone);
        var down = Pump(upstream, client, upstreamPrefix, idle, onBytes, fromClient: false, pair, oneWay: end == RelayEnd.UpstreamDone);
        bool cut;
        using (IdleSweeper.Register(idle))
        {
            // When one direction fails (reset, abort), stop the other too.
            var first = await Task.WhenAny(up, down).ConfigureAwait(false);
            cut = first.Result.Failed;
            if (cut) pair.ShutdownBoth();
            else if (end != RelayEnd.BothDone)
            {
                // The data direction is what counts: once it is done, the other is not waited for.
                cut = (await (end == RelayEnd.ClientDone ? up : down).ConfigureAwait(false)).Failed;
                pair.ShutdownBoth();
            }
            await Task.WhenAll(up, down).ConfigureAwait(false);
        }
        return new RelayResult(up.Result.Bytes, down.Result.Bytes, idle.TimedOut, cut || idle.TimedOut);
    }

    readonly record struct PumpResult(long Bytes, bool Failed);

    /// <summary>How a spliced direction ended: done (<see cref="Done"/>), or handing back to copying with the pipe empty after <see cref="Total"/> bytes.</summary>
    readonly record struct SpliceOutcome(PumpResult? Done, long Total);

    sealed class SocketPair(Socket a, Socket b)
    {
        volatile bool _stopped;
        public bool Stopped => _stopped;

        public void ShutdownBoth()
        {
            _stopped = true;
            Shutdown(a);
            Shutdown(b);
        }

        static void Shutdown(Socket s)
        {
            try { s.Shutdown(SocketShutdown.Both); }
            catch (SocketException) { }
            catch (ObjectDisposedException) { }
        }
    }

    static async Task<PumpResult> Pump(Socket from, Socket to, ReadOnlyMemory<byte> prefix, IdleWatch idle,
        Action<long, long>? onBytes, bool fromClient, SocketPair pair, bool oneWay)
    {
        long total = 0;
        byte[]? buffer = null;
        try
        {
            if (!prefix.IsEmpty)
            {
                await SendAll(to, prefix).ConfigureAwait(false);
                total += prefix.Length;
                onBytes?.Invoke(fromClient ? prefix.Length : 0, fromClient ? 0 : prefix.Length);
            }
            buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
            var memory = buffer.AsMemory();
            bool bulk = false;
            while (true)
            {
                if (!bulk && total >= SpliceAfter)
                {
                    bulk = true;
                    if (oneWay) WakeForBatches(from, idle);
                    // An upload is copied: the server reads what a send(2) of up to 4 MiB makes (a few large segments),
                    // where a spliced upload hands it curl's 32 KiB fragments page by page and costs it twice the CPU.
                    if (!(oneWay && fromClient) && SplicePipe.TryCreate(from, to) is { } pipe)
                    {
                        SpliceOutcome spliced;
                        using (pipe) spliced = await SplicePump(from, to, pipe, buffer, total, idle, onBytes, fromClient, pair).ConfigureAwait(false);
                        if (spliced.Done is { } done) return done;
                        total = spliced.Total;
                    }
                    // Copying from here on: in large chunks, so a system call moves what the socket holds.
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = null;
                    buffer = ArrayPool<byte>.Shared.Rent(BulkBufferSize);
                    memory = buffer.AsMemory();
                }
                int n = await from.ReceiveAsync(memory, SocketFlags.None).ConfigureAwait(false);
                if (n == 0)
                {
                    // A shutdown by the relay itself also reads as end of stream: that is a stop, not a half-close.
                    if (pair.Stopped) return new PumpResult(total, true);
                    // Half-close: tell the other side we are done sending, keep the other direction open.
                    try { to.Shutdown(SocketShutdown.Send); } catch (SocketException) { } catch (ObjectDisposedException) { }
                    return new PumpResult(total, false);
                }
                idle.Touch();
                await SendAll(to, memory[..n]).ConfigureAwait(false);
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
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// The rest of one direction through a kernel pipe: fill it from the source, drain it into the destination, and
    /// only when a socket would block, wait through the socket API (a zero-byte receive for readable; for writable, a
    /// send of what the pipe holds, read into <paramref name="buffer"/>). <paramref name="total"/> counts on from the copied part.
    /// </summary>
    static async Task<SpliceOutcome> SplicePump(Socket from, Socket to, SplicePipe pipe, byte[] buffer, long total, IdleWatch idle,
        Action<long, long>? onBytes, bool fromClient, SocketPair pair)
    {
        int slotBound = 0;
        try
        {
            while (true)
            {
                if (slotBound >= SmallFragmentFills)
                {
                    // The pipe is empty here: the rest is copied.
                    Interlocked.Increment(ref _copySwitches);
                    return new SpliceOutcome(null, total);
                }
                long n = pipe.Fill(from);
                if (SplicePipe.WouldBlock(n))
                {
                    // Nothing to read yet: wait until there is (or the end of the stream), without a buffer.
                    await from.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);
                    n = pipe.Fill(from);
                    if (SplicePipe.WouldBlock(n))
                    {
                        // Readable for the socket API but not for splice (urgent data...): copy this once.
                        int r = await from.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false);
                        if (r > 0)
                        {
                            idle.Touch();
                            await SendAll(to, buffer.AsMemory(0, r)).ConfigureAwait(false);
                            total += r;
                            onBytes?.Invoke(fromClient ? r : 0, fromClient ? 0 : r);
                            continue;
                        }
                        n = 0;
                    }
                }
                if (n < 0) return Done(total, true);
                if (n == 0)
                {
                    if (pair.Stopped) return Done(total, true);
                    try { to.Shutdown(SocketShutdown.Send); } catch (SocketException) { } catch (ObjectDisposedException) { }
                    return Done(total, false);
                }
                if (n < pipe.Size && from.Available >= SmallFragmentBacklog)
                {
                    // Short of the pipe's size while the source holds more: if the pipe takes no more, its slots ran
                    // out before its bytes (small fragments); else the data just arrived, and joins this chunk.
                    long more = pipe.Fill(from);
                    if (SplicePipe.WouldBlock(more)) slotBound++;
                    else
                    {
                        if (more > 0) n += more;
                        slotBound = 0;
                    }
                }
                else slotBound = 0;
                idle.Touch();
                long left = n;
                while (left > 0)
                {
                    long m = pipe.Drain(to, left);
                    if (SplicePipe.WouldBlock(m))
                    {
                        // The receiver is slower: send part of the pipe through the socket API, which waits for room.
                        Interlocked.Increment(ref _blockedDrains);
                        m = pipe.Read(buffer.AsSpan(0, (int)Math.Min(left, buffer.Length)));
                        if (m <= 0) return Done(total, true);
                        await SendAll(to, buffer.AsMemory(0, (int)m)).ConfigureAwait(false);
                    }
                    else if (m <= 0) return Done(total, true);
                    left -= m;
                    total += m;
                    idle.Touch();
                    onBytes?.Invoke(fromClient ? m : 0, fromClient ? 0 : m);
                }
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            return Done(total, true);
        }

        static SpliceOutcome Done(long total, bool failed) => new(new PumpResult(total, failed), total);
    }

    /// <summary>
    /// A bulk transfer that only flows one way and ends with the end of its stream (an FTP data connection): its
    /// source wakes the relay only when <see cref="BulkLowWater"/> bytes wait (SO_RCVLOWAT) or the stream ends, so
    /// that each wake-up moves a batch instead of whatever one packet brought.
    /// </summary>
    /// <remarks>A sender slower than that (a throttled client) is not held up for long: once the relay has been quiet
    /// for a second, <see cref="IdleWatch"/> puts the mark back to one byte for the rest of the transfer.</remarks>
    static void WakeForBatches(Socket from, IdleWatch idle)
    {
        if (SetLowWater(from, BulkLowWater)) idle.Batched = from;
    }

    internal static bool SetLowWater(Socket s, int bytes)
    {
        try
        {
            s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveLowWater, bytes);
            return true;
        }
        catch (SocketException) { return false; }
        catch (ObjectDisposedException) { return false; }
    }

    static async ValueTask SendAll(Socket to, ReadOnlyMemory<byte> data)
    {
        // Socket.SendAsync completes only when everything is sent (or fails) for stream sockets.
        while (!data.IsEmpty)
        {
            int sent = await to.SendAsync(data, SocketFlags.None).ConfigureAwait(false);
            if (sent <= 0) throw new IOException("send made no progress");
            data = data[sent..];
        }
    }
}

/// <summary>Last-activity time of one relay; the sweeper cancels it when idle too long.</summary>
public sealed class IdleWatch(TimeSpan timeout, CancellationTokenSource cts)
{
    long _last = Environment.TickCount64;
    readonly long _timeoutMs = (long)timeout.TotalMilliseconds;
    public bool TimedOut { get; private set; }

    /// <summary>A source that wakes the relay only for batches (SO_RCVLOWAT), until the relay has been quiet a while.</summary>
    internal volatile Socket? Batched;
    const long BatchQuietMs = 1000;

    public void Touch() => Volatile.Write(ref _last, Environment.TickCount64);

    internal void Check(long now)
    {
        if (Batched is { } batched && now - Volatile.Read(ref _last) >= BatchQuietMs)
        {
            // Quiet for a second under a low-water mark: a slow sender. What it sent goes on now, and so does the
            // rest, a byte at a time if need be; the idle timeout counts from here.
            Batched = null;
            SocketRelay.SetLowWater(batched, 1);
            Touch();
            return;
        }
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
