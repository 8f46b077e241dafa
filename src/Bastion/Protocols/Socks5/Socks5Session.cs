using System.Net;
using System.Net.Sockets;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Identity;
using Bastion.Policy;
using Bastion.Policy.Canonical;

namespace Bastion.Protocols.Socks5;

/// <summary>
/// One SOCKS connection: greeting → authenticate (RFC 1929) → request → decide → resolve and connect → reply →
/// relay (or the UDP association). The connection's record is its closed line (request, reply code, reason,
/// bytes); each decision is a request line of its own.
/// </summary>
sealed class Socks5Session(ListenerContext ctx, ClientConnection conn)
{
    /// <summary>Longest handshake message: RFC 1929's 3 + 255 + 255 bytes; SOCKS4a's user id and host name.</summary>
    const int HandshakeCapacity = 1024;

    readonly ListenerConfig _cfg = ctx.Config;
    readonly Exchange _record = conn.Record;
    readonly Transport _client = conn.Transport;
    readonly HandshakeBuffer _buf = new(conn.Transport.Input, HandshakeCapacity);
    readonly byte[] _reply = new byte[22];

    public async Task RunAsync()
    {
        using var handshake = CancellationTokenSource.CreateLinkedTokenSource(conn.Aborted);
        handshake.CancelAfter(_cfg.Limits.HeaderTimeout);
        try
        {
            if (!await _buf.FillAsync(handshake.Token).ConfigureAwait(false)) { _record.Reason = "closed before a greeting"; return; }
            switch (_buf.Data[0])
            {
                case 5:
                    await Socks5Async(handshake).ConfigureAwait(false);
                    return;
                case 4 when _cfg.Socks4:
                    await Socks4Async(handshake).ConfigureAwait(false);
                    return;
                case 4:
                    _record.Reason = "SOCKS4 request but socks4 is off";
                    _record.Status = SocksReply.Socks4Rejected;
                    await SendSocks4Reply(SocksReply.Socks4Rejected, null).ConfigureAwait(false);
                    return;
                default:
                    _record.Reason = "not a SOCKS greeting";
                    return;
            }
        }
        catch (OperationCanceledException) when (handshake.IsCancellationRequested && !conn.Aborted.IsCancellationRequested)
        {
            _record.Reason = "handshake timeout";
        }
    }

    async Task Socks5Async(CancellationTokenSource handshake)
    {
        var ct = handshake.Token;
        if (!await GreetingAsync(ct).ConfigureAwait(false)) return;

        // The request.
        Socks5Request req;
        byte code;
        SocksParse p;
        while ((p = SocksParser.Request(_buf.Data, out req, out code)) == SocksParse.NeedMore)
            if (!await _buf.FillAsync(ct).ConfigureAwait(false)) { _record.Reason = "incomplete request"; return; }
        if (p == SocksParse.Malformed)
        {
            _record.Reason = code == SocksReply.AddressTypeNotSupported ? "address type not supported" : "malformed request";
            _record.Status = code;
            await SendReply(code, null).ConfigureAwait(false);
            return;
        }
        _buf.Consume(req.Length);
        _buf.Release();
        handshake.CancelAfter(Timeout.InfiniteTimeSpan);
        switch (req.Command)
        {
            case SocksParser.CmdConnect:
                _record.Request = $"CONNECT {req.Target}";
                await ConnectAsync(req.Target, socks4: false).ConfigureAwait(false);
                return;
            case SocksParser.CmdUdpAssociate:
                _record.Request = $"UDP ASSOCIATE {req.Target}";
                await UdpAssociateAsync(req.Target).ConfigureAwait(false);
                return;
            default:
                _record.Request = $"{(req.Command == SocksParser.CmdBind ? "BIND" : $"CMD {req.Command}")} {req.Target}";
                _record.Reason = "command not supported";
                _record.Status = SocksReply.CommandNotSupported;
                await SendReply(SocksReply.CommandNotSupported, null).ConfigureAwait(false);
                return;
        }
    }

    /// <summary>Method selection and, when the listener authenticates, RFC 1929 username/password. False when the connection ends here.</summary>
    async Task<bool> GreetingAsync(CancellationToken ct)
    {
        bool noAuth, userPass;
        int len;
        SocksParse p;
        while ((p = SocksParser.Greeting(_buf.Data, out noAuth, out userPass, out len)) == SocksParse.NeedMore)
            if (!await _buf.FillAsync(ct).ConfigureAwait(false)) { _record.Reason = "incomplete greeting"; return false; }
        if (p == SocksParse.Malformed)
        {
            _record.Reason = "malformed greeting";
            await SendRaw([5, SocksParser.MethodNone]).ConfigureAwait(false);
            return false;
        }
        _buf.Consume(len);
        if (!_cfg.Authenticate)
        {
            if (noAuth)
            {
                await SendRaw([5, SocksParser.MethodNoAuth]).ConfigureAwait(false);
                return true;
            }
            _record.Reason = "client offers no method the gateway accepts (no authentication)";
            await SendRaw([5, SocksParser.MethodNone]).ConfigureAwait(false);
            return false;
        }
        if (!userPass)
        {
            _record.Reason = "client offers no username/password method";
            Deny("(authentication)", PseudoRules.Authenticate, "authentication required", SocksParser.MethodNone);
            await SendRaw([5, SocksParser.MethodNone]).ConfigureAwait(false);
            return false;
        }
        await SendRaw([5, SocksParser.MethodUserPass]).ConfigureAwait(false);
        string user, password;
        while ((p = SocksParser.UserPass(_buf.Data, out user, out password, out len)) == SocksParse.NeedMore)
            if (!await _buf.FillAsync(ct).ConfigureAwait(false)) { _record.Reason = "incomplete authentication"; return false; }
        if (p == SocksParse.Malformed)
        {
            _record.Reason = "malformed username/password request";
            await SendRaw([1, 1]).ConfigureAwait(false);
            return false;
        }
        _buf.Consume(len);
        var login = await ctx.Runtime.Identity.LoginAsync(user, password, conn.Client.Address, ct).ConfigureAwait(false);
        if (login != LoginResult.Ok)
        {
            ctx.Metrics.AuthFailure(ctx.Name);
            _record.Reason = login == LoginResult.Throttled ? "too many failed logins from this address" : "authentication failed";
            _record.Status = 1;
            Deny("(authentication)", PseudoRules.Authenticate, $"bad credentials for '{Truncate(user)}'", 1);
            await SendRaw([1, 1]).ConfigureAwait(false);
            return false;
        }
        conn.User = user;
        await SendRaw([1, 0]).ConfigureAwait(false);
        return true;
    }

    async Task Socks4Async(CancellationTokenSource handshake)
    {
        Socks4Request req;
        SocksParse p;
        while ((p = SocksParser.Socks4(_buf.Data, out req)) == SocksParse.NeedMore)
            if (!await _buf.FillAsync(handshake.Token).ConfigureAwait(false)) { _record.Reason = "incomplete SOCKS4 request"; return; }
        _record.Status = SocksReply.Socks4Rejected;
        if (p == SocksParse.Malformed)
        {
            _record.Reason = "malformed SOCKS4 request";
            await SendSocks4Reply(SocksReply.Socks4Rejected, null).ConfigureAwait(false);
            return;
        }
        _buf.Consume(req.Length);
        _buf.Release();
        handshake.CancelAfter(Timeout.InfiniteTimeSpan);
        _record.Request = $"{(req.Command == SocksParser.CmdConnect ? "CONNECT" : "BIND")} {req.Target}";
        if (req.Command != SocksParser.CmdConnect)
        {
            _record.Reason = "command not supported";
            await SendSocks4Reply(SocksReply.Socks4Rejected, null).ConfigureAwait(false);
            return;
        }
        if (_cfg.Authenticate)
        {
            // SOCKS4 carries a user id but no password: nothing to verify it with.
            _record.Reason = "authentication required (SOCKS4 cannot authenticate)";
            Deny(_record.Request, PseudoRules.Authenticate, _record.Reason, SocksReply.Socks4Rejected);
            await SendSocks4Reply(SocksReply.Socks4Rejected, null).ConfigureAwait(false);
            return;
        }
        await ConnectAsync(req.Target, socks4: true).ConfigureAwait(false);
    }

    /// <summary>
    /// What the policy sees of a SOCKS target; `explain` fills the same from `host:port`. Hosts from the wire are
    /// normalised by the parser; explain's are normalised here the same way (an invalid one is left as written).
    /// </summary>
    internal static void Fill(RequestAttributes a, string host, int port)
    {
        a.Host = HostName.Normalize(host) ?? host;
        a.Port = port;
    }

    async Task ConnectAsync(SocksTarget target, bool socks4)
    {
        var attrs = new RequestAttributes { Source = conn.Client.Address, User = conn.User };
        Fill(attrs, target.Host, target.Port);
        var decision = ctx.Policy.Evaluate(attrs);
        if (!decision.Allowed)
        {
            byte denied = socks4 ? SocksReply.Socks4Rejected : SocksReply.NotAllowed;
            _record.Status = denied;
            _record.Reason = decision.Reason;
            Decided(decision, denied);
            await SendConnectReply(socks4, denied, null).ConfigureAwait(false);
            return;
        }
        conn.Target = target.ToString();
        var (upstream, code, why) = await DialAsync(target, attrs).ConfigureAwait(false);
        if (code == SocksReply.NotAllowed && upstream is null && _addressDenied is { } addressDenied)
        {
            // A name allowed by name, whose every address the address rules deny (SPEC 2.1).
            decision = addressDenied;
            code = socks4 ? SocksReply.Socks4Rejected : SocksReply.NotAllowed;
            _record.Status = code;
            _record.Reason = decision.Reason;
            Decided(decision, code);
            await SendConnectReply(socks4, code, null).ConfigureAwait(false);
            return;
        }
        byte wire = socks4 ? (code == SocksReply.Succeeded ? SocksReply.Socks4Granted : SocksReply.Socks4Rejected) : code;
        _record.Status = wire;
        _record.Reason = why;
        Decided(decision, wire, why);
        if (upstream is null)
        {
            await SendConnectReply(socks4, wire, null).ConfigureAwait(false);
            return;
        }
        await using (upstream)
        {
            _record.Upstream = conn.Target;
            await SendConnectReply(socks4, wire, upstream.LocalEndPoint).ConfigureAwait(false);
            // Bytes the client sent right behind its request wait in the pipe: the relay sends them first.
            var result = await StreamRelay.RunAsync(_client, upstream, _cfg.Limits.IdleTimeout, _record.Counter, conn.Aborted)
                .ConfigureAwait(false);
            if (result.IdleTimedOut) _record.Reason = "idle timeout";
        }
    }

    Decision? _addressDenied;

    /// <summary>
    /// Resolves (only now that the policy allowed the name), asks the address rules about every address (a literal
    /// is its own), and connects to the allowed ones; the SOCKS reply code either way.
    /// </summary>
    async Task<(Transport? Upstream, byte Code, string? Why)> DialAsync(SocksTarget target, RequestAttributes attrs)
    {
        var limits = _cfg.Limits;
        var judged = await Connector.ResolveJudgedAsync(ctx.Runtime.Resolver, ctx.Policy, attrs, target.Host, limits.ConnectTimeout, conn.Aborted).ConfigureAwait(false);
        if (judged.Denied is { } denied)
        {
            _addressDenied = denied;
            return (null, SocksReply.NotAllowed, denied.Reason);
        }
        if (!judged.Ok)
            return (null, judged.Error == SocketError.TimedOut ? SocksReply.TtlExpired : SocksReply.HostUnreachable, $"cannot resolve {target.Domain}: {judged.Error}");
        var addresses = judged.Allowed;
        var r = await Transport.ConnectAsync(addresses, target.Port, limits.ConnectTimeout, conn.Aborted).ConfigureAwait(false);
        return r.Ok
            ? (r.Transport, SocksReply.Succeeded, null)
            : (null, SocksReply.FromSocketError(r.Error), $"connect {target}: {r.Message ?? r.Error.ToString()}");
    }

    async Task UdpAssociateAsync(SocksTarget declared)
    {
        var local = conn.Local!.Address;
        if (local.IsIPv4MappedToIPv6) local = local.MapToIPv4();
        var peer = ((IPEndPoint)conn.Socket!.RemoteEndPoint!).Address;
        if (peer.IsIPv4MappedToIPv6) peer = peer.MapToIPv4();
        using var udp = new Socket(local.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try { udp.Bind(new IPEndPoint(local, 0)); }
        catch (SocketException e)
        {
            _record.Status = SocksReply.GeneralFailure;
            _record.Reason = $"cannot open a UDP relay: {e.Message}";
            await SendReply(SocksReply.GeneralFailure, null).ConfigureAwait(false);
            return;
        }
        var relayEp = (IPEndPoint)udp.LocalEndPoint!;
        conn.Target = $"udp {relayEp}";
        await SendReply(SocksReply.Succeeded, relayEp).ConfigureAwait(false);
        _record.Status = SocksReply.Succeeded;
        var assoc = new UdpAssociation(ctx, conn, udp, peer, declared, _cfg.Limits);
        var stats = await assoc.RunAsync(_client.Input).ConfigureAwait(false);
        _record.Reason = $"udp: {stats.Forwarded} datagrams forwarded, {stats.Returned} returned, {stats.Dropped} dropped";
    }

    /// <summary>A decision line for the connection's request, with the reply code sent.</summary>
    void Decided(Decision d, int status, string? why = null)
    {
        var x = ctx.Open(conn, ExchangeKinds.Request, conn.Id);
        x.Request = _record.Request;
        x.Status = status;
        x.Decide(d);
        if (why is not null) x.Reason = why;
        x.Close();
    }

    void Deny(string? request, string rule, string reason, int status)
    {
        var x = ctx.Open(conn, ExchangeKinds.Request, conn.Id);
        x.Request = request;
        x.Status = status;
        x.Deny(rule, reason).Close();
    }

    static string Truncate(string s) => s.Length <= 64 ? s : s[..64];

    ValueTask SendRaw(byte[] data) => _client.SendAsync(data);

    ValueTask SendConnectReply(bool socks4, byte code, IPEndPoint? bound) =>
        socks4 ? SendSocks4Reply(code, bound) : SendReply(code, bound);

    ValueTask SendReply(byte code, IPEndPoint? bound)
    {
        int n = SocksParser.WriteReply(_reply, code, bound);
        return _client.SendAsync(_reply.AsMemory(0, n));
    }

    ValueTask SendSocks4Reply(byte code, IPEndPoint? bound)
    {
        _reply[0] = 0;
        _reply[1] = code;
        var ip = bound?.Address is { } a && (a.AddressFamily == AddressFamily.InterNetwork || a.IsIPv4MappedToIPv6) ? a.MapToIPv4() : IPAddress.Any;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(_reply.AsSpan(2), (ushort)(bound?.Port ?? 0));
        ip.TryWriteBytes(_reply.AsSpan(4, 4), out _);
        return _client.SendAsync(_reply.AsMemory(0, 8));
    }
}
