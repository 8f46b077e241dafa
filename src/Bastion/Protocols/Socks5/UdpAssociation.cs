using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Gateway;

namespace Bastion.Protocols.Socks5;

/// <summary>
/// One UDP ASSOCIATE (RFC 1928 section 7): a relay socket of its own, datagrams from the client unwrapped and sent
/// to the destination each names once the policy allows it (host, port; a name is resolved only then), and
/// answers from those destinations wrapped and sent back. Lives as long as the TCP control connection.
/// Fragments are not supported (dropped, as the RFC allows); datagrams from anyone else are dropped.
/// </summary>
sealed class UdpAssociation(ListenerContext ctx, ClientConnection conn, Socket udp, IPAddress clientIp, SocksTarget declared,
    Limits limits)
{
    public readonly record struct Stats(long BytesIn, long BytesOut, long Forwarded, long Returned, long Dropped);

    /// <summary>Room kept before each received datagram for the SOCKS header of the answer (IPv6: 4 + 16 + 2).</summary>
    const int HeaderRoom = 22;
    const int MaxPeers = 1024, MaxLoggedTargets = 256, MaxDnsEntries = 256;
    static readonly TimeSpan DnsTtl = TimeSpan.FromSeconds(60);

    SocketAddress? _client;
    readonly HashSet<SocketAddress> _peers = [];
    readonly HashSet<string> _logged = new(StringComparer.Ordinal);
    readonly Dictionary<string, (IPAddress Address, long Expires)> _dns = new(StringComparer.Ordinal);
    readonly RequestAttributes _attrs = new();
    readonly IPEndPoint _template = new(udp.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
    long _lastDenyLog;
    long _in, _out, _forwarded, _returned, _dropped;

    readonly Exchange _record = conn.Record;

    public async Task<Stats> RunAsync(PipeReader control)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(conn.Aborted);
        var watch = WatchControlAsync(control, cts);
        try { await LoopAsync(cts.Token).ConfigureAwait(false); }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { }
        finally
        {
            cts.Cancel();
            await watch.ConfigureAwait(false);
        }
        return new Stats(_in, _out, _forwarded, _returned, _dropped);
    }

    /// <summary>The association ends when the client closes the TCP connection (anything it sends there is ignored).</summary>
    static async Task WatchControlAsync(PipeReader control, CancellationTokenSource cts)
    {
        try
        {
            while (true)
            {
                var r = await control.ReadAsync(cts.Token).ConfigureAwait(false);
                control.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted || r.IsCanceled) break;
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException or IOException or InvalidOperationException) { }
        try { cts.Cancel(); } catch (ObjectDisposedException) { }
    }

    async Task LoopAsync(CancellationToken ct)
    {
        var buffer = new byte[HeaderRoom + 65_536];
        var from = new SocketAddress(udp.AddressFamily);
        while (true)
        {
            int n = await udp.ReceiveFromAsync(buffer.AsMemory(HeaderRoom), SocketFlags.None, from, ct).ConfigureAwait(false);
            if (_client is not null && from.Equals(_client)) await FromClientAsync(buffer.AsMemory(HeaderRoom, n), ct).ConfigureAwait(false);
            else if (_peers.Contains(from)) await FromPeerAsync(buffer, n, from, ct).ConfigureAwait(false);
            else if (_client is null && IsClient(from)) await FromClientAsync(buffer.AsMemory(HeaderRoom, n), ct).ConfigureAwait(false);
            else _dropped++;
        }
    }

    /// <summary>The first datagram from the control connection's own address (and the declared port, if any) fixes the client.</summary>
    bool IsClient(SocketAddress from)
    {
        var ep = (IPEndPoint)_template.Create(from);
        var ip = ep.Address.IsIPv4MappedToIPv6 ? ep.Address.MapToIPv4() : ep.Address;
        if (!ip.Equals(clientIp)) return false;
        if (declared.Port != 0 && declared.Port != ep.Port) return false;
        _client = ep.Serialize();
        return true;
    }

    async Task FromClientAsync(Memory<byte> datagram, CancellationToken ct)
    {
        int h = SocksParser.UdpHeader(datagram.Span, out byte frag, out var target);
        if (h < 0 || frag != 0)
        {
            _dropped++;
            return;
        }
        _attrs.Reset();
        _attrs.Source = conn.Client.Address;
        _attrs.User = conn.User;
        _attrs.Host = target.Host;
        _attrs.Port = target.Port;
        var policy = ctx.Policy;
        var decision = policy.Evaluate(_attrs);
        IPAddress? ip = null;
        if (decision.Allowed)
        {
            ip = target.Address ?? await ResolveAsync(target.Domain!, ct).ConfigureAwait(false);
            // The address each datagram goes to is judged too (SPEC 2.1): a name must not carry it somewhere denied.
            if (ip is not null && policy.JudgeAddress(_attrs, ip) is { Allowed: false } denied) decision = denied;
        }
        LogDecision(target, decision);
        if (!decision.Allowed || ip is null || target.Port == 0)
        {
            _dropped++;
            return;
        }
        if (udp.AddressFamily == AddressFamily.InterNetworkV6 && ip.AddressFamily == AddressFamily.InterNetwork) ip = ip.MapToIPv6();
        if (ip.AddressFamily != udp.AddressFamily)
        {
            _dropped++;
            return;
        }
        var dest = new IPEndPoint(ip, target.Port).Serialize();
        if (!_peers.Contains(dest) && _peers.Count < MaxPeers) _peers.Add(dest);
        var payload = datagram[h..];
        await udp.SendToAsync(payload, SocketFlags.None, dest, ct).ConfigureAwait(false);
        _forwarded++;
        _in += payload.Length;
        _record.AddIn(payload.Length);
    }

    async Task FromPeerAsync(byte[] buffer, int n, SocketAddress from, CancellationToken ct)
    {
        var ep = (IPEndPoint)_template.Create(from);
        Span<byte> header = stackalloc byte[HeaderRoom];
        header[0] = header[1] = header[2] = 0;
        int hl = 3 + SocksParser.WriteAddress(header[3..], ep);
        header[..hl].CopyTo(buffer.AsSpan(HeaderRoom - hl));
        await udp.SendToAsync(buffer.AsMemory(HeaderRoom - hl, hl + n), SocketFlags.None, _client!, ct).ConfigureAwait(false);
        _returned++;
        _out += n;
        _record.AddOut(n);
    }

    async Task<IPAddress?> ResolveAsync(string name, CancellationToken ct)
    {
        long now = Environment.TickCount64;
        if (_dns.TryGetValue(name, out var hit) && hit.Expires > now) return hit.Address;
        var (addrs, err) = await ctx.Runtime.Resolver.ResolveAsync(name, limits.ConnectTimeout, ct).ConfigureAwait(false);
        if (err != SocketError.Success) return null;
        var pick = addrs.FirstOrDefault(a => a.AddressFamily == udp.AddressFamily) ?? addrs[0];
        if (_dns.Count >= MaxDnsEntries) _dns.Clear();
        _dns[name] = (pick, now + (long)DnsTtl.TotalMilliseconds);
        return pick;
    }

    /// <summary>
    /// Each destination's first verdict is logged; later denials at most once a second, so a flood cannot flood the
    /// log. Every decision is counted in the metrics all the same.
    /// </summary>
    void LogDecision(SocksTarget target, Decision d)
    {
        var key = target.ToString();
        bool first = false;
        if (_logged.Count < MaxLoggedTargets) first = _logged.Add(key);
        long now = Environment.TickCount64;
        if (!first && (d.Allowed || now - _lastDenyLog < 1000))
        {
            ctx.CountUnlogged(d);
            return;
        }
        if (!d.Allowed) _lastDenyLog = now;
        var x = ctx.Open(conn, ExchangeKinds.Request, conn.Id);
        x.Request = $"UDP {key}";
        x.Status = d.Allowed ? SocksReply.Succeeded : SocksReply.NotAllowed;
        x.Decide(d).Close();
    }
}
