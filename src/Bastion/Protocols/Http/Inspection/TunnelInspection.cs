using System.Buffers;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Runtime.CompilerServices;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Gateway.Tls;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Protocols.Http.Io;
using Bastion.Protocols.HttpProxy;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>How the CONNECT line is logged once the tunnel's fate is known.</summary>
delegate void ConnectLog(int status, string rule, string? reason, Verdict verdict, string tls, string? sni);

/// <summary>
/// What happens after a CONNECT is allowed and the origin's TCP connection is open (SPEC 3, tls_inspection):
/// read the ClientHello without answering, ask the policy again with its `sni`, then splice (relay untouched,
/// the peeked bytes first) or inspect: TLS to the origin first (offering the client's ALPN, verifying its
/// certificate), then TLS to the client with a certificate minted for the name (mirroring the protocol the origin
/// chose), and every request inside goes through the forward-proxy engine like a plain one.
/// </summary>
sealed class TunnelInspection(ListenerContext ctx, ClientConnection conn, ForwardInspection state, ForwardPools pools)
{
    static readonly SslApplicationProtocol[] Inspectable = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11];

    /// <summary>Runs the tunnel to its end; returns the reason to put on the connection line, if any.</summary>
    /// <param name="upstream">The origin's connection (owned from here); null when the CONNECT waits for the server name to be allowed.</param>
    /// <param name="connectLater">Connects to the origin once the policy allowed the server name.</param>
    /// <param name="client">The client's buffer: the bytes behind the CONNECT head, and where the peek reads to.</param>
    public async Task<string?> RunAsync(Peer client, Duplex? upstream,
        Func<Task<(Duplex? Io, int Status, string? Reason)>> connectLater, RequestAttributes attrs, Decision decision,
        Limits limits, ConnectLog log)
    {
        var settings = ctx.Runtime.Inspection.GetValueOrDefault(ctx.Name);
        var connectHost = Unbracket(attrs.Host!);
        bool inspectTarget = settings is not null && settings.ShouldInspect(connectHost);
        // A tunnel to an inspected host is inspected or refused, never spliced: its socket stays on the gateway's
        // epoll engine (EngineStream). Any other goes back to .NET's engine, which the splice relay uses.
        bool onEngine = inspectTarget && client.Io is EpollDuplex;
        if (!onEngine) client.Io.Detach();
        var (status, hello, peekError) = onEngine
            ? await PeekOnEngineAsync(client, limits.HeaderTimeout).ConfigureAwait(false)
            : await PeekAsync(client, limits.HeaderTimeout).ConfigureAwait(false);
        var sni = hello?.ServerName;
        var name = sni ?? connectHost;

        // The policy again, now that it can see the name inside TLS.
        if (sni is not null || upstream is null)
        {
            attrs.Sni = sni;
            var d = ctx.Policy.Evaluate(attrs);
            if (!d.Allowed)
            {
                log(403, d.RuleName, d.Reason ?? "denied by policy", Verdict.Deny, "refused", sni);
                state.Counted(ctx, "refused");
                return sni is null ? "tunnel closed: denied (no TLS server name)" : $"tunnel closed: server name {sni} denied";
            }
            decision = d;
        }
        if (upstream is null)
        {
            var (connected, code, why) = await connectLater().ConfigureAwait(false);
            if (connected is null)
            {
                // 403: the name was allowed but every address it resolves to is denied (SPEC 2.1).
                log(code, decision.RuleName, why, code == 403 ? Verdict.Deny : Verdict.Allow, "refused", sni);
                return why;
            }
            upstream = connected;
        }
        await using var owned = upstream;

        if (status != HelloStatus.Parsed)
        {
            if (inspectTarget)
            {
                var why = $"not TLS after CONNECT to an inspected host ({peekError})";
                log(200, "tls_inspection", why, Verdict.Deny, "refused", null);
                state.Counted(ctx, "refused");
                return why;
            }
            log(200, decision.RuleName, decision.Reason, Verdict.Allow, "spliced", null);
            return await SpliceAsync(client, upstream, limits).ConfigureAwait(false);
        }

        // A name the client claims differs from the CONNECT host: inspected unless both are skipped.
        bool inspect = settings is not null && (settings.ShouldInspect(name) || (name != connectHost && inspectTarget));
        if (!inspect)
        {
            log(200, decision.RuleName, decision.Reason, Verdict.Allow, "spliced", sni);
            return await SpliceAsync(client, upstream, limits).ConfigureAwait(false);
        }
        return await InspectAsync(settings!, hello!, name, sni, client, onEngine, upstream, attrs, decision, limits, log).ConfigureAwait(false);
    }

    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<CompiledPolicy, StrongBox<(bool Asks, HashSet<string> SniRules, bool SniAllows)>> SniUse = new();

    static (bool Asks, HashSet<string> SniRules, bool SniAllows) Sni(CompiledPolicy p) =>
        SniUse.GetValue(p, static p =>
        {
            static bool Uses(Condition c) => c.Attribute == "sni" || (c is NotCondition n && n.Inner.Any(Uses));
            var rules = p.RequestRules.Where(r => r.Conditions.Any(Uses)).ToList();
            return new((rules.Count > 0, rules.Select(r => r.Name).ToHashSet(StringComparer.Ordinal), rules.Any(r => r.Verdict == Verdict.Allow)));
        }).Value;

    /// <summary>Whether any request rule of the policy asks about `sni` (then every tunnel is peeked).</summary>
    public static bool AsksSni(CompiledPolicy p) => Sni(p).Asks;

    /// <summary>A CONNECT denied by the default or by a rule on `sni` may be allowed once the server name is known.</summary>
    public static bool SniMayAllow(CompiledPolicy p, Decision d)
    {
        var (_, sniRules, sniAllows) = Sni(p);
        return sniAllows && (d.RuleName == $"{p.Name}#default" || sniRules.Contains(d.RuleName));
    }

    /// <summary>Relays untouched, the peeked bytes first.</summary>
    async Task<string?> SpliceAsync(Peer client, Duplex upstream, Limits limits)
    {
        state.Counted(ctx, "spliced");
        client.Io.Detach();
        upstream.Detach();
        ReadOnlyMemory<byte> early = client.Count > 0 ? client.Data.ToArray() : default;
        client.Clear();
        await SocketRelay.RunAsync(conn.Socket!, upstream.Socket!, limits.IdleTimeout, conn.Record.Counter, early, default, conn.Aborted).ConfigureAwait(false);
        return null;
    }

    async Task<string?> InspectAsync(InspectionSettings settings, ClientHello hello, string name, string? sni, Peer clientBuffer,
        bool onEngine, Duplex upstream, RequestAttributes attrs, Decision decision, Limits limits, ConnectLog log)
    {
        string? Refuse(string why)
        {
            log(200, "tls_inspection", why, Verdict.Deny, "refused", sni);
            state.Counted(ctx, "refused");
            return why;
        }
        if (!settings.Ca.Permits(name)) return Refuse($"the inspection CA's name constraints do not cover {name}");
        // Only HTTP can be inspected: a client that offers ALPN but neither h2 nor http/1.1 speaks something else.
        List<SslApplicationProtocol>? alpn = null;
        if (!hello.Alpn.IsEmpty)
        {
            alpn = [.. Inspectable.Where(p => hello.Alpn.Contains(p.ToString()))];
            if (!state.Http2Enabled) alpn.Remove(SslApplicationProtocol.Http2);
            if (alpn.Count == 0) return Refuse($"the client offers only {string.Join(", ", hello.Alpn)} (ALPN), which cannot be inspected");
        }

        // The origin first: what it accepts is what the client is offered.
        var cache = state.Tls.CacheFor(settings.Ca);
        var minting = cache.GetAsync(name);
        // The origin's leg on the same engine as the client's (each record one receive, no EAGAIN tries first).
        bool originOnEngine = onEngine && upstream is EpollDuplex;
        if (!originOnEngine) upstream.Detach();
        Stream transport = originOnEngine ? new EngineStream(upstream) : new TlsSocketStream(upstream.Socket!);
        var origin = await OriginTls.HandshakeAsync(transport, name, alpn, settings, limits.ConnectTimeout, conn.Aborted).ConfigureAwait(false);
        SslApplicationProtocol chosen;
        if (origin.Ok) chosen = origin.Protocol;
        else chosen = alpn is null ? default : (alpn.Contains(SslApplicationProtocol.Http11) ? SslApplicationProtocol.Http11 : alpn[0]);

        SslStreamCertificateContext certificate;
        try { certificate = await minting.ConfigureAwait(false); }
        catch (Exception e) when (e is CaException or System.Security.Cryptography.CryptographicException)
        {
            if (origin.Stream is { } s) await s.DisposeAsync().ConfigureAwait(false);
            return Refuse($"cannot mint a certificate for {name}: {e.Message}");
        }

        // The ClientHello read to decide goes into the handshake first. HTTP/2 inside runs on Kestrel, which closes
        // the socket itself (no wake-up for a receive waiting on the epoll engine): it goes back to .NET's engine.
        var hello0 = clientBuffer.Data.ToArray();
        clientBuffer.Clear();
        if (onEngine && chosen == SslApplicationProtocol.Http2)
        {
            onEngine = false;
            clientBuffer.Io.Detach();
        }
        var client = new SslStream(onEngine ? new EngineStream(clientBuffer.Io, hello0) : new TlsSocketStream(conn.Socket!, hello0), leaveInnerStreamOpen: false);
        var serverOptions = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = certificate,
            ApplicationProtocols = chosen == default ? null : [chosen],
            ClientCertificateRequired = false,
        };
        using (var hs = CancellationTokenSource.CreateLinkedTokenSource(conn.Aborted))
        {
            hs.CancelAfter(limits.HeaderTimeout);
            try { await client.AuthenticateAsServerAsync(serverOptions, hs.Token).ConfigureAwait(false); }
            catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException or SocketException)
            {
                if (origin.Stream is { } s) await s.DisposeAsync().ConfigureAwait(false);
                await client.DisposeAsync().ConfigureAwait(false);
                if (conn.Aborted.IsCancellationRequested) throw new OperationCanceledException(conn.Aborted);
                var why = hs.IsCancellationRequested
                    ? $"the client did not finish the TLS handshake for {name} within {limits.HeaderTimeout.TotalSeconds:0.#}s"
                    : $"the client refused the minted certificate for {name}: {TlsAlerts.Describe(e)} (a client that pins certificates needs a tls_inspection.skip entry)";
                log(200, decision.RuleName, why, Verdict.Allow, "inspected", sni);
                state.Counted(ctx, "client_refused");
                return why;
            }
        }

        log(200, decision.RuleName, origin.Ok ? decision.Reason : origin.Error, Verdict.Allow, "inspected", sni);
        state.Counted(ctx, "inspected");
        var targetAddress = ((IPEndPoint)upstream.Socket!.RemoteEndPoint!).Address;
        using var target = new InspectedOrigin
        {
            Name = name,
            Sni = sni,
            Port = attrs.Port,
            Failure = origin.Ok ? null : origin.Error,
            Http2 = client.NegotiatedApplicationProtocol == SslApplicationProtocol.Http2,
        };
        if (origin.Stream is { } first)
        {
            if (target.Http2)
            {
                // HTTP/2's client does its own TLS: the first connection only told what the origin speaks.
                await first.DisposeAsync().ConfigureAwait(false);
                target.Upstream = InspectedOrigin.Http2Client(target, targetAddress, attrs.Port, settings, limits);
            }
            else
            {
                // HTTP/1.1 goes on the engine's own client: a pool for this tunnel, its first connection the verified one.
                target.Pool = InspectedOrigin.Http1Pool(target, targetAddress, settings, limits);
                target.Pool.Adopt(originOnEngine ? new EngineTlsDuplex(first, upstream, ownsInner: true) : Duplex.Over(first, upstream.Socket));
            }
        }
        await using (client.ConfigureAwait(false))
        {
            if (target.Http2) await state.Http2.ServeAsync(client, conn.Socket!, target, conn).ConfigureAwait(false);
            else
            {
                var decrypted = onEngine ? new EngineTlsDuplex(client, clientBuffer.Io, ownsInner: false) : Duplex.Over(client, conn.Socket);
                await new ForwardSession(ctx, conn, pools, state, target, decrypted).RunAsync().ConfigureAwait(false);
            }
        }
        if (target.Pool is { } pool) await pool.RetireAsync().ConfigureAwait(false);
        return null;
    }

    /// <summary>Reads the client's first bytes until a whole ClientHello, something else, or the header timeout.</summary>
    /// <remarks>
    /// Reads the socket itself with a cancellable receive (the engine's own receives take no token), into the
    /// client's buffer: nothing is consumed, and whatever happens next (the relay when spliced, the TLS handshake
    /// when inspected) starts with these bytes.
    /// </remarks>
    async Task<(HelloStatus, ClientHello?, string?)> PeekAsync(Peer client, TimeSpan timeout)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(conn.Aborted);
        cts.CancelAfter(timeout);
        var buffer = ArrayPool<byte>.Shared.Rent(4096);
        try
        {
            while (true)
            {
                var status = ClientHelloParser.TryParse(new ReadOnlySequence<byte>(client.DataMemory(client.Count)), out var hello, out var error);
                if (status != HelloStatus.NeedMore) return (status, hello, error);
                int n;
                try { n = await conn.Socket!.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, cts.Token).ConfigureAwait(false); }
                catch (OperationCanceledException) when (!conn.Aborted.IsCancellationRequested)
                {
                    return (status, null, $"no ClientHello within {timeout.TotalSeconds:0.#}s");
                }
                catch (SocketException) { n = 0; }
                if (n == 0) return (status, null, "the client closed before a whole ClientHello");
                client.Append(buffer.AsSpan(0, n));
            }
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
    }

    /// <summary>
    /// The same on the epoll engine, into the client's buffer: the header timeout shuts the socket's receiving side
    /// (the tunnel is refused then anyway: an inspected host gets TLS or nothing).
    /// </summary>
    static async Task<(HelloStatus, ClientHello?, string?)> PeekOnEngineAsync(Peer client, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        using var expiry = cts.Token.UnsafeRegister(static io => ((Duplex)io!).ShutdownReceive(), client.Io);
        while (true)
        {
            var status = ClientHelloParser.TryParse(new ReadOnlySequence<byte>(client.DataMemory(client.Count)), out var hello, out var error);
            if (status != HelloStatus.NeedMore) return (status, hello, error);
            int n;
            try
            {
                n = await client.ReceiveAsync().ConfigureAwait(false);
                // A hello longer than the buffer: room for the parser's bound, which then decides.
                if (n < 0 && client.Capacity < ClientHelloParser.DefaultMaxSize + 4096)
                {
                    client.Grow(ClientHelloParser.DefaultMaxSize + 4096);
                    continue;
                }
            }
            catch (Exception e) when (Duplex.IsIoError(e)) { n = 0; }
            if (cts.IsCancellationRequested) return (status, null, $"no ClientHello within {timeout.TotalSeconds:0.#}s");
            if (n == 0) return (status, null, "the client closed before a whole ClientHello");
            if (n < 0) return (HelloStatus.Malformed, null, "a ClientHello longer than the parser's bound");
        }
    }

    static string Unbracket(string host) => host.Length > 2 && host[0] == '[' && host[^1] == ']' ? host[1..^1] : host;
}
