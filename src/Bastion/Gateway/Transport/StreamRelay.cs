using System.IO.Pipelines;
using System.Net.Sockets;

namespace Bastion.Gateway;

/// <summary>
/// The relay between two <see cref="Transport"/>s (CONNECT tunnels, SOCKS, TCP, FTP data, SMTP after DATA...).
/// Bytes already buffered in either side's <see cref="Transport.Input"/> go first. When both sides are plain
/// sockets it hands over to <see cref="SocketRelay"/>, the socket-to-socket pump; otherwise (TLS, pipes) each
/// direction reads the source's pipe and writes the destination's stream. Either way an end of stream is passed on
/// as a half-close and the other direction keeps flowing; an idle timeout or a failure stops both.
/// </summary>
public static class StreamRelay
{
    /// <param name="onBytes">Called with (fromClient, toClient) deltas as data moves; used for live counters.</param>
    /// <param name="end">When the relay is over: both directions done (default), or the one that carries the data.</param>
    public static async Task<RelayResult> RunAsync(Transport client, Transport upstream, TimeSpan idleTimeout,
        Action<long, long>? onBytes, CancellationToken ct, RelayEnd end = RelayEnd.BothDone)
    {
        if (client.IsPlainSocket && upstream.IsPlainSocket)
        {
            // What protocol code read ahead (a TLS ClientHello behind CONNECT, data behind a SOCKS request) goes first.
            var clientPrefix = client.TakeBuffered();
            var upstreamPrefix = upstream.TakeBuffered();
            await FlushAsync(client, upstream).ConfigureAwait(false);
            return await SocketRelay.RunAsync(client.Socket!, upstream.Socket!, idleTimeout, onBytes, clientPrefix, upstreamPrefix, ct, end)
                .ConfigureAwait(false);
        }
        await FlushAsync(client, upstream).ConfigureAwait(false);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var idle = new IdleWatch(idleTimeout, cts);
        var up = Pump(client, upstream, idle, onBytes, fromClient: true, cts.Token);
        var down = Pump(upstream, client, idle, onBytes, fromClient: false, cts.Token);
        bool cut;
        using (IdleSweeper.Register(idle))
        {
            var first = await Task.WhenAny(up, down).ConfigureAwait(false);
            cut = first.Result.Failed;
            if (cut) Stop(cts, client, upstream);
            else if (end != RelayEnd.BothDone)
            {
                cut = (await (end == RelayEnd.ClientDone ? up : down).ConfigureAwait(false)).Failed;
                Stop(cts, client, upstream);
            }
            await Task.WhenAll(up, down).ConfigureAwait(false);
        }
        return new RelayResult(up.Result.Bytes, down.Result.Bytes, idle.TimedOut, cut || idle.TimedOut);
    }

    static async Task FlushAsync(Transport a, Transport b)
    {
        // Anything protocol code wrote but did not flush must reach the peer before relayed bytes.
        try
        {
            if (a.HasOutputPipe) await a.Output.FlushAsync().ConfigureAwait(false);
            if (b.HasOutputPipe) await b.Output.FlushAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException) { }
    }

    static void Stop(CancellationTokenSource cts, Transport a, Transport b)
    {
        try { cts.Cancel(); } catch (ObjectDisposedException) { }
        // A write blocked on a peer that reads nothing does not see the token on every stream: shut the sockets too.
        foreach (var t in (ReadOnlySpan<Transport>)[a, b])
        {
            try { t.Socket?.Shutdown(SocketShutdown.Both); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        }
    }

    readonly record struct PumpResult(long Bytes, bool Failed);

    static async Task<PumpResult> Pump(Transport from, Transport to, IdleWatch idle, Action<long, long>? onBytes,
        bool fromClient, CancellationToken ct)
    {
        long total = 0;
        var input = from.Input;
        var output = to.Stream;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(ct).ConfigureAwait(false);
                var buffer = result.Buffer;
                if (!buffer.IsEmpty)
                {
                    idle.Touch();
                    foreach (var segment in buffer)
                        await output.WriteAsync(segment, ct).ConfigureAwait(false);
                    await output.FlushAsync(ct).ConfigureAwait(false);
                    idle.Touch();
                    long n = buffer.Length;
                    total += n;
                    onBytes?.Invoke(fromClient ? n : 0, fromClient ? 0 : n);
                }
                input.AdvanceTo(buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    if (result.IsCanceled) return new PumpResult(total, true);
                    // Half-close: the peer is done sending; tell the other side, keep the other direction open.
                    await to.ShutdownSendAsync().ConfigureAwait(false);
                    return new PumpResult(total, false);
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException
            or InvalidOperationException or System.Security.Authentication.AuthenticationException)
        {
            return new PumpResult(total, true);
        }
    }
}
