using System.Runtime.CompilerServices;
using Bastion.Protocols.Http.Codec;
using Bastion.Protocols.Http.Engine;
using Bastion.Protocols.Http.Io;

namespace Bastion.Protocols.Http.Upstream;

public enum UpstreamEnd : byte
{
    /// <summary>A final response head is in <see cref="UpstreamConnection.Response"/>; its body is still to relay.</summary>
    Response,
    ConnectFailed,
    /// <summary>The request could not be sent (the server closed or reset).</summary>
    SendFailed,
    /// <summary>The server closed the connection without a response.</summary>
    NoResponse,
    /// <summary>The response head broke the rules (502, connection closed).</summary>
    InvalidResponse,
    TimedOut,
    /// <summary>The client's body failed (bad framing, over the limit, client gone): see <see cref="UpstreamResult.Body"/>.</summary>
    ClientBodyFailed,
}

/// <summary>How sending a request upstream ended.</summary>
public readonly record struct UpstreamResult(UpstreamEnd End, UpstreamConnection? Connection, string? Error,
    Task<PumpResult>? RequestBody = null, PumpResult Body = default, bool ConnectTimedOut = false, int Attempts = 1);

/// <summary>What one request to an upstream needs besides its bytes.</summary>
public readonly record struct UpstreamTimeouts(TimeSpan Response, TimeSpan Idle);

/// <summary>
/// One HTTP/1.1 request to an upstream over a pooled connection: write the head (already built from the client's
/// parsed head), stream the client's body alongside, read the final response head (interim 1xx responses are passed
/// to <c>interim</c> or dropped). A pooled connection that turns out closed is replaced once, and only when the
/// request has no body, so nothing the client sent is ever sent twice in part.
/// </summary>
public static class UpstreamExchange
{
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    public static async ValueTask<UpstreamResult> SendAsync(UpstreamPool pool, ReadOnlyMemory<byte> head, Peer? client,
        BodyFraming framing, long maxBody, bool headRequest, bool connectRequest, UpstreamTimeouts timeouts,
        Func<ResponseHead, ValueTask>? interim, int maxResponseHead, CancellationToken ct)
    {
        bool hasBody = framing.HasBody && client is not null;
        for (int attempt = 1; ; attempt++)
        {
            var rented = await pool.RentAsync(fresh: attempt > 1, ct).ConfigureAwait(false);
            if (!rented.Ok) return new UpstreamResult(UpstreamEnd.ConnectFailed, null, rented.Error, ConnectTimedOut: rented.TimedOut, Attempts: attempt);
            var conn = rented.Connection!;
            bool mayRetry = conn.Reused && attempt == 1 && !hasBody;
            long receivedBefore = conn.Peer.Total;
            conn.ExpireIn(timeouts.Response);
            try
            {
                await conn.Peer.Io.SendAsync(head).ConfigureAwait(false);
            }
            catch (Exception e) when (Duplex.IsIoError(e))
            {
                await conn.CloseAsync().ConfigureAwait(false);
                if (mayRetry) continue;
                return new UpstreamResult(conn.TimedOut ? UpstreamEnd.TimedOut : UpstreamEnd.SendFailed, null,
                    $"sending to {pool.Label} failed: {e.Message}", Attempts: attempt);
            }
            Task<PumpResult>? body = hasBody ? SendBodyAsync(client!, conn, framing, maxBody, timeouts) : null;

            // The response head is read here, not in a method of its own: one async frame less per request.
            var peer = conn.Peer;
            UpstreamResult r;
            while (true)
            {
                var step = TryHead(conn, headRequest, connectRequest, interim is not null, maxResponseHead, out r);
                if (step == HeadStep.Done) break;
                if (step == HeadStep.Interim)
                {
                    await interim!(conn.Response).ConfigureAwait(false);
                    continue;
                }
                if (peer.Count >= peer.Capacity) peer.Grow(Math.Min(maxResponseHead + 1, peer.Capacity * 2));
                int n;
                try { n = await peer.ReceiveAsync().ConfigureAwait(false); }
                catch (Exception e) when (Duplex.IsIoError(e))
                {
                    r = conn.TimedOut
                        ? new UpstreamResult(UpstreamEnd.TimedOut, conn, $"{conn.Pool.Label} did not answer in time")
                        : new UpstreamResult(UpstreamEnd.NoResponse, conn, $"{conn.Pool.Label} closed the connection: {e.Message}");
                    break;
                }
                if (n == 0)
                {
                    r = conn.TimedOut
                        ? new UpstreamResult(UpstreamEnd.TimedOut, conn, $"{conn.Pool.Label} did not answer in time")
                        : new UpstreamResult(peer.Count > 0 ? UpstreamEnd.InvalidResponse : UpstreamEnd.NoResponse, conn,
                            peer.Count > 0 ? $"{conn.Pool.Label} closed the connection in the middle of a response head" : $"{conn.Pool.Label} closed the connection without a response");
                    break;
                }
            }
            if (r.End == UpstreamEnd.Response) return r with { RequestBody = body, Attempts = attempt };

            // No usable response. A body that failed first is the reason (the pump aborted the connection).
            if (body is not null)
            {
                var b = await body.ConfigureAwait(false);
                if (!b.Ok && b.End != PumpEnd.SinkFailed)
                {
                    await conn.CloseAsync().ConfigureAwait(false);
                    return new UpstreamResult(UpstreamEnd.ClientBodyFailed, null, r.Error, Body: b, Attempts: attempt);
                }
            }
            bool stale = mayRetry && r.End == UpstreamEnd.NoResponse && conn.Peer.Total == receivedBefore;
            await conn.CloseAsync().ConfigureAwait(false);
            if (stale) continue;
            return r with { Connection = null, RequestBody = null, Attempts = attempt };
        }
    }

    static async Task<PumpResult> SendBodyAsync(Peer client, UpstreamConnection conn, BodyFraming framing, long maxBody, UpstreamTimeouts t)
    {
        var r = await BodyPump.CopyAsync(client, conn.Peer.Io, framing, BodyOut.AsFramed, maxBody, conn, t.Idle).ConfigureAwait(false);
        // A broken body must not reach the server as a complete request: cut the connection.
        if (!r.Ok) conn.Abort();
        else conn.ExpireIn(t.Response);
        return r;
    }

    enum HeadStep : byte { NeedBytes, Interim, Done }

    /// <summary>
    /// One look at what the upstream sent: a final response head (or a verdict on it) in <paramref name="result"/>,
    /// an interim one to pass on (100 Continue is dropped here: the gateway's own business with the client), or
    /// more bytes needed.
    /// </summary>
    static HeadStep TryHead(UpstreamConnection conn, bool headRequest, bool connectRequest, bool relayInterim, int maxHead, out UpstreamResult result)
    {
        var peer = conn.Peer;
        var h = conn.Response;
        result = default;
        while (peer.Count > 0)
        {
            var p = ResponseParser.TryParse(peer.Data, h, maxHead, headRequest, connectRequest, out int consumed, out var error);
            if (p == ParseResult.Invalid)
            {
                result = new UpstreamResult(UpstreamEnd.InvalidResponse, conn, $"invalid response from {conn.Pool.Label}: {error.Reason}");
                return HeadStep.Done;
            }
            if (p == ParseResult.Complete)
            {
                peer.Consume(consumed);
                if (!h.IsInterim)
                {
                    // Nothing may follow a response without a body (we never pipeline): bytes there are a body
                    // on a 204/304/HEAD response, or a second response nobody asked for.
                    if (h.Framing.Kind == BodyKind.None && h.Status != 101 && !(connectRequest && h.Status is >= 200 and < 300)
                        && peer.Data.IndexOfAnyExcept("\r\n"u8) >= 0)
                        result = new UpstreamResult(UpstreamEnd.InvalidResponse, conn, $"invalid response from {conn.Pool.Label}: bytes after a response that has no body ({h.Status}{(headRequest ? " to HEAD" : "")})");
                    else result = new UpstreamResult(UpstreamEnd.Response, conn, null);
                    return HeadStep.Done;
                }
                // 103 and others go on to the client; 100 Continue does not.
                if (h.Status != 100 && relayInterim) return HeadStep.Interim;
                continue;
            }
            if (peer.Count >= maxHead)
            {
                result = new UpstreamResult(UpstreamEnd.InvalidResponse, conn, $"response head from {conn.Pool.Label} too large");
                return HeadStep.Done;
            }
            break;
        }
        return HeadStep.NeedBytes;
    }
}
