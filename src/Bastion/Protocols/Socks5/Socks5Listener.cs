using System.Net;
using System.Net.Sockets;
using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Identity;
using Bastion.Policy;
using Bastion.Gateway;

namespace Bastion.Protocols.Socks5;

/// <summary>
/// The SOCKS gateway (SPEC 3, socks5): RFC 1928 CONNECT and UDP ASSOCIATE, RFC 1929 username/password, and
/// SOCKS4/4a when `socks4: true`. Every target is put to the policy (source, user, host, port) before anything
/// is resolved or connected, so a denied name is never looked up.
/// </summary>
public sealed class Socks5Listener(ListenerContext ctx) : StreamListener(ctx)
{
    /// <summary>Longest handshake message: RFC 1929's 3 + 255 + 255 bytes; SOCKS4a's user id and host name.</summary>
    const int HandshakeCapacity = 1024;

    /// <summary>What one connection amounted to, for its closing log line.</summary>
    sealed class Outcome
    {
        public string? Request;
        public int Status;
        public string? Reason;
        public long BytesIn, BytesOut;
    }

    protected override async Task HandleAsync(ClientConnection conn)
    {
        var o = new Outcome();
        try
        {
            await ServeAsync(conn, o).ConfigureAwait(false);
        }
        finally
        {
            Ctx.RecordClosed(conn, o.Request, o.Status, o.Reason, o.BytesIn, o.BytesOut);
        }
    }

    async Task ServeAsync(ClientConnection conn, Outcome o)
    {
        var socket = conn.Socket!;
        var cfg = Ctx.Config;
        var buf = new HandshakeBuffer(socket, HandshakeCapacity);
        using var handshake = CancellationTokenSource.CreateLinkedTokenSource(conn.Aborted);
        handshake.CancelAfter(cfg.Limits.HeaderTimeout);
        var reply = new byte[22];
        try
        {
            if (!await buf.FillAsync(handshake.Token).ConfigureAwait(false)) { o.Reason = "closed before a greeting"; return; }
            switch (buf.Data[0])
            {
                case 5:
                    await Socks5Async(conn, o, cfg, buf, reply, handshake).ConfigureAwait(false);
                    return;
                case 4 when cfg.Socks4:
                    await Socks4Async(conn, o, cfg, buf, reply, handshake).ConfigureAwait(false);
                    return;
                case 4:
                    o.Reason = "SOCKS4 request but socks4 is off";
                    o.Status = SocksReply.Socks4Rejected;
                    await SendSocks4Reply(socket, reply, SocksReply.Socks4Rejected, null).ConfigureAwait(false);
                    return;
                default:
                    o.Reason = "not a SOCKS greeting";
                    return;
            }
        }
        catch (OperationCanceledException) when (handshake.IsCancellationRequested && !conn.Aborted.IsCancellationRequested)
        {
            o.Reason = "handshake timeout";
        }
    }

    async Task Socks5Async(ClientConnection conn, Outcome o, ListenerConfig cfg, HandshakeBuffer buf, byte[] reply,
        CancellationTokenSource handshake)
    {
        var socket = conn.Socket!;
        var ct = handshake.Token;
        // Method selection.
        bool noAuth, userPass;
        int len;
        SocksParse p;
        while ((p = SocksParser.Greeting(buf.Data, out noAuth, out userPass, out len)) == SocksParse.NeedMore)
            if (!await buf.FillAsync(ct).ConfigureAwait(false)) { o.Reason = "incomplete greeting"; return; }
        if (p == SocksParse.Malformed)
        {
            o.Reason = "malformed greeting";
            await SendRaw(socket, [5, SocksParser.MethodNone]).ConfigureAwait(false);
            return;
        }
        buf.Consume(len);
        if (cfg.Authenticate)
        {
            if (!userPass)
            {
                o.Reason = "client offers no username/password method";
                RecordDeny(conn, "(authentication)", "authenticate", "authentication required", SocksParser.MethodNone);
                await SendRaw(socket, [5, SocksParser.MethodNone]).ConfigureAwait(false);
                return;
            }
            await SendRaw(socket, [5, SocksParser.MethodUserPass]).ConfigureAwait(false);
            string user, password;
            while ((p = SocksParser.UserPass(buf.Data, out user, out password, out len)) == SocksParse.NeedMore)
                if (!await buf.FillAsync(ct).ConfigureAwait(false)) { o.Reason = "incomplete authentication"; return; }
            if (p == SocksParse.Malformed)
            {
                o.Reason = "malformed username/password request";
                await SendRaw(socket, [1, 1]).ConfigureAwait(false);
                return;
            }
            buf.Consume(len);
            var login = await Ctx.Runtime.Identity.LoginAsync(user, password, conn.Client.Address, ct).ConfigureAwait(false);
            if (login != LoginResult.Ok)
            {
                Ctx.Metrics.AuthFailure(Name);
                o.Reason = login == LoginResult.Throttled ? "too many failed logins from this address" : "authentication failed";
                o.Status = 1;
                RecordDeny(conn, "(authentication)", "authenticate", $"bad credentials for '{Truncate(user)}'", 1);
                await SendRaw(socket, [1, 1]).ConfigureAwait(false);
                return;
            }
            conn.User = user;
            await SendRaw(socket, [1, 0]).ConfigureAwait(false);
        }
        else if (!noAuth)
        {
            o.Reason = "client offers no method the gateway accepts (no authentication)";
            await SendRaw(socket, [5, SocksParser.MethodNone]).ConfigureAwait(false);
            return;
        }
        else await SendRaw(socket, [5, SocksParser.MethodNoAuth]).ConfigureAwait(false);

        // The request.
        Socks5Request req;
        byte code;
        while ((p = SocksParser.Request(buf.Data, out req, out code)) == SocksParse.NeedMore)
            if (!await buf.FillAsync(ct).ConfigureAwait(false)) { o.Reason = "incomplete request"; return; }
        if (p == SocksParse.Malformed)
        {
            o.Reason = code == SocksReply.AddressTypeNotSupported ? "address type not supported" : "malformed request";
            o.Status = code;
            await SendReply(socket, reply, code, null).ConfigureAwait(false);
            return;
        }
        buf.Consume(req.Length);
        handshake.CancelAfter(Timeout.InfiniteTimeSpan);
        switch (req.Command)
        {
            case SocksParser.CmdConnect:
                o.Request = $"CONNECT {req.Target}";
                await ConnectAsync(conn, o, cfg, req.Target, buf.Remaining, socks4: false, reply).ConfigureAwait(false);
                return;
            case SocksParser.CmdUdpAssociate:
                o.Request = $"UDP ASSOCIATE {req.Target}";
                await UdpAssociateAsync(conn, o, cfg, req.Target, reply).ConfigureAwait(false);
                return;
            default:
                o.Request = $"{(req.Command == SocksParser.CmdBind ? "BIND" : $"CMD {req.Command}")} {req.Target}";
                o.Reason = "command not supported";
                o.Status = SocksReply.CommandNotSupported;
                await SendReply(socket, reply, SocksReply.CommandNotSupported, null).ConfigureAwait(false);
                return;
        }
    }

    async Task Socks4Async(ClientConnection conn, Outcome o, ListenerConfig cfg, HandshakeBuffer buf, byte[] reply,
        CancellationTokenSource handshake)
    {
        var socket = conn.Socket!;
        Socks4Request req;
        SocksParse p;
        while ((p = SocksParser.Socks4(buf.Data, out req)) == SocksParse.NeedMore)
            if (!await buf.FillAsync(handshake.Token).ConfigureAwait(false)) { o.Reason = "incomplete SOCKS4 request"; return; }
        o.Status = SocksReply.Socks4Rejected;
        if (p == SocksParse.Malformed)
        {
            o.Reason = "malformed SOCKS4 request";
            await SendSocks4Reply(socket, reply, SocksReply.Socks4Rejected, null).ConfigureAwait(false);
            return;
        }
        buf.Consume(req.Length);
        handshake.CancelAfter(Timeout.InfiniteTimeSpan);
        o.Request = $"{(req.Command == SocksParser.CmdConnect ? "CONNECT" : "BIND")} {req.Target}";
        if (req.Command != SocksParser.CmdConnect)
        {
            o.Reason = "command not supported";
            await SendSocks4Reply(socket, reply, SocksReply.Socks4Rejected, null).ConfigureAwait(false);
            return;
        }
        if (cfg.Authenticate)
        {
            // SOCKS4 carries a user id but no password: nothing to verify it with.
            o.Reason = "authentication required (SOCKS4 cannot authenticate)";
            RecordDeny(conn, o.Request, "authenticate", o.Reason, SocksReply.Socks4Rejected);
            await SendSocks4Reply(socket, reply, SocksReply.Socks4Rejected, null).ConfigureAwait(false);
            return;
        }
        await ConnectAsync(conn, o, cfg, req.Target, buf.Remaining, socks4: true, reply).ConfigureAwait(false);
    }

    RequestAttributes Attributes(ClientConnection conn, SocksTarget target) => new()
    {
        Source = conn.Client.Address,
        User = conn.User,
        Host = target.Host,
        Port = target.Port,
    };

    async Task ConnectAsync(ClientConnection conn, Outcome o, ListenerConfig cfg, SocksTarget target,
        ReadOnlyMemory<byte> early, bool socks4, byte[] reply)
    {
        var socket = conn.Socket!;
        var attrs = Attributes(conn, target);
        var decision = Ctx.Policy.Evaluate(attrs);
        if (!decision.Allowed)
        {
            byte denied = socks4 ? SocksReply.Socks4Rejected : SocksReply.NotAllowed;
            o.Status = denied;
            o.Reason = decision.Reason;
            RecordDecision(conn, o.Request!, decision, denied);
            await (socks4 ? SendSocks4Reply(socket, reply, denied, null) : SendReply(socket, reply, denied, null)).ConfigureAwait(false);
            return;
        }
        conn.Target = target.ToString();
        var limits = cfg.Limits;
        Socket? upstream = null;
        byte code;
        string? why = null;
        // Resolved (a literal is its own address) and every address judged before anything connects (SPEC 2.1).
        var judged = await Connector.ResolveJudgedAsync(Ctx.Runtime.Resolver, Ctx.Policy, attrs, target.Host, limits.ConnectTimeout, conn.Aborted).ConfigureAwait(false);
        if (judged.Denied is { } addressDenied)
        {
            byte denied = socks4 ? SocksReply.Socks4Rejected : SocksReply.NotAllowed;
            o.Status = denied;
            o.Reason = addressDenied.Reason;
            RecordDecision(conn, o.Request!, addressDenied, denied);
            await (socks4 ? SendSocks4Reply(socket, reply, denied, null) : SendReply(socket, reply, denied, null)).ConfigureAwait(false);
            return;
        }
        if (!judged.Ok)
        {
            code = judged.Error == SocketError.TimedOut ? SocksReply.TtlExpired : SocksReply.HostUnreachable;
            why = $"cannot resolve {target.Domain}: {judged.Error}";
        }
        else
        {
            var r = await Connector.ConnectAsync(judged.Allowed, target.Port, limits.ConnectTimeout, conn.Aborted).ConfigureAwait(false);
            upstream = r.Socket;
            code = r.Ok ? SocksReply.Succeeded : SocksReply.FromSocketError(r.Error);
            if (!r.Ok) why = $"connect {target}: {r.Message ?? r.Error.ToString()}";
        }
        byte wire = socks4 ? (code == SocksReply.Succeeded ? SocksReply.Socks4Granted : SocksReply.Socks4Rejected) : code;
        o.Status = wire;
        o.Reason = why;
        RecordDecision(conn, o.Request!, decision, wire, why);
        if (upstream is null)
        {
            await (socks4 ? SendSocks4Reply(socket, reply, wire, null) : SendReply(socket, reply, wire, null)).ConfigureAwait(false);
            return;
        }
        using (upstream)
        {
            var bound = (IPEndPoint)upstream.LocalEndPoint!;
            await (socks4 ? SendSocks4Reply(socket, reply, wire, bound) : SendReply(socket, reply, wire, bound)).ConfigureAwait(false);
            var result = await SocketRelay.RunAsync(socket, upstream, limits.IdleTimeout, Counter(conn), early, default, conn.Aborted)
                .ConfigureAwait(false);
            o.BytesIn = result.BytesFromClient;
            o.BytesOut = result.BytesToClient;
            if (result.IdleTimedOut) o.Reason = "idle timeout";
        }
    }

    async Task UdpAssociateAsync(ClientConnection conn, Outcome o, ListenerConfig cfg, SocksTarget declared, byte[] reply)
    {
        var socket = conn.Socket!;
        var local = ((IPEndPoint)socket.LocalEndPoint!).Address;
        if (local.IsIPv4MappedToIPv6) local = local.MapToIPv4();
        var peer = ((IPEndPoint)socket.RemoteEndPoint!).Address;
        if (peer.IsIPv4MappedToIPv6) peer = peer.MapToIPv4();
        using var udp = new Socket(local.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try { udp.Bind(new IPEndPoint(local, 0)); }
        catch (SocketException e)
        {
            o.Status = SocksReply.GeneralFailure;
            o.Reason = $"cannot open a UDP relay: {e.Message}";
            await SendReply(socket, reply, SocksReply.GeneralFailure, null).ConfigureAwait(false);
            return;
        }
        var relayEp = (IPEndPoint)udp.LocalEndPoint!;
        conn.Target = $"udp {relayEp}";
        await SendReply(socket, reply, SocksReply.Succeeded, relayEp).ConfigureAwait(false);
        o.Status = SocksReply.Succeeded;
        var assoc = new UdpAssociation(Ctx, conn, udp, peer, declared, cfg.Limits, Counter(conn));
        var stats = await assoc.RunAsync(socket).ConfigureAwait(false);
        o.BytesIn = stats.BytesIn;
        o.BytesOut = stats.BytesOut;
        o.Reason = $"udp: {stats.Forwarded} datagrams forwarded, {stats.Returned} returned, {stats.Dropped} dropped";
    }

    Action<long, long> Counter(ClientConnection conn) => (fromClient, toClient) =>
    {
        if (fromClient != 0) Interlocked.Add(ref conn.BytesIn, fromClient);
        if (toClient != 0) Interlocked.Add(ref conn.BytesOut, toClient);
        Ctx.Metrics.Bytes(Name, fromClient, toClient);
    };

    void RecordDecision(ClientConnection conn, string request, Decision d, int status, string? why = null) =>
        Ctx.RecordDecision(conn, request, d.Verdict, d.RuleName, why ?? d.Reason, status);

    void RecordDeny(ClientConnection conn, string request, string rule, string reason, int status) =>
        Ctx.RecordDecision(conn, request, Verdict.Deny, rule, reason, status);

    static string Truncate(string s) => s.Length <= 64 ? s : s[..64];

    static async Task SendRaw(Socket s, byte[] data)
    {
        int sent = 0;
        while (sent < data.Length) sent += await s.SendAsync(data.AsMemory(sent), SocketFlags.None).ConfigureAwait(false);
    }

    static async Task SendReply(Socket s, byte[] reply, byte code, IPEndPoint? bound)
    {
        int n = SocksParser.WriteReply(reply, code, bound);
        int sent = 0;
        while (sent < n) sent += await s.SendAsync(reply.AsMemory(sent, n - sent), SocketFlags.None).ConfigureAwait(false);
    }

    static async Task SendSocks4Reply(Socket s, byte[] reply, byte code, IPEndPoint? bound)
    {
        reply[0] = 0;
        reply[1] = code;
        var ip = bound?.Address is { } a && (a.AddressFamily == AddressFamily.InterNetwork || a.IsIPv4MappedToIPv6) ? a.MapToIPv4() : IPAddress.Any;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(2), (ushort)(bound?.Port ?? 0));
        ip.TryWriteBytes(reply.AsSpan(4, 4), out _);
        int sent = 0;
        while (sent < 8) sent += await s.SendAsync(reply.AsMemory(sent, 8 - sent), SocketFlags.None).ConfigureAwait(false);
    }
}
