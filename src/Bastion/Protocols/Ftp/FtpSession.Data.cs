using System.Net;
using System.Net.Sockets;
using System.Text;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Protocols.Ftp;

// Data connections: the gateway owns both ends. PASV/EPSV/PORT/EPRT from the client set up the client's side
// (answered by the gateway, never relayed); at the transfer command the gateway sets up the server's side in
// its own mode (data_mode), relays the command, pairs the two connections and relays the bytes.
public sealed partial class FtpSession
{
    /// <summary>The client's side of the next transfer, as its last PASV/EPSV/PORT/EPRT set it up.</summary>
    FtpDataChannel? _data;
    bool _epsvAll;
    /// <summary>REST offset to send the server just before the next transfer command; -1 when none.</summary>
    long _restOffset = -1;
    /// <summary>The server answered EPSV with 500/502: PASV from now on (IPv4 only).</summary>
    bool _serverNoEpsv;

    IPAddress ControlLocal => _conn.Local!.Address.IsIPv4MappedToIPv6 ? _conn.Local.Address.MapToIPv4() : _conn.Local.Address;

    async Task ClientDataSetupAsync(Exchange x, FtpCommandSpec spec, FtpCommandLine cmd)
    {
        if (_epsvAll && spec.Verb != FtpVerb.EPSV)
        {
            x.Deny(PseudoRules.Protocol, "EPSV ALL in effect");
            await ReplyAsync(x, 503, $"{spec.Name} refused after EPSV ALL").ConfigureAwait(false);
            return;
        }
        await CloseDataAsync().ConfigureAwait(false);
        switch (spec.Verb)
        {
            case FtpVerb.EPSV when cmd.EpsvProto == -1:
                _epsvAll = true;
                await ReplyAsync(x, 200, "EPSV ALL ok").ConfigureAwait(false);
                return;
            case FtpVerb.PASV or FtpVerb.EPSV:
                var local = ControlLocal;
                int family = local.AddressFamily == AddressFamily.InterNetwork ? 1 : 2;
                if (spec.Verb == FtpVerb.EPSV && cmd.EpsvProto != 0 && cmd.EpsvProto != family)
                {
                    await ReplyAsync(x, 522, $"Network protocol not supported, use ({family})").ConfigureAwait(false);
                    return;
                }
                if (spec.Verb == FtpVerb.PASV && family == 2 && _s.PassiveAddress is null)
                {
                    x.Deny(PseudoRules.Protocol, "PASV on an IPv6 connection");
                    await ReplyAsync(x, 425, "PASV carries IPv4 only: use EPSV").ConfigureAwait(false);
                    return;
                }
                var listener = _s.Ports.Listen(local);
                if (listener is null)
                {
                    x.Reason = "no passive port free";
                    await ReplyAsync(x, 425, "No passive port free, try again later").ConfigureAwait(false);
                    return;
                }
                _data = FtpDataChannel.Listen(listener, _conn.Client.Address, _s.Ftp.DataTimeout, ForeignDataConnection);
                await ReplyAsync(x, spec.Verb == FtpVerb.PASV ? 227 : 229, spec.Verb == FtpVerb.PASV
                    ? FtpAddress.PasvReply(_s.PassiveAddress ?? local, _data.Port)[4..]
                    : FtpAddress.EpsvReply(_data.Port)[4..]).ConfigureAwait(false);
                return;
            default:
                // PORT/EPRT: only the client's own address, only unprivileged ports (no FTP bounce, RFC 2577).
                var target = cmd.Address!;
                string? refused = !FtpAddress.SameHost(target.Address, _conn.Client.Address)
                    ? $"data connection to {target.Address}, which is not the client's address"
                    : target.Port < 1024 ? $"data connection to privileged port {target.Port}" : null;
                if (refused is not null)
                {
                    x.Deny(PseudoRules.Protocol, $"{spec.Name} refused (bounce): {refused}");
                    await ReplyAsync(x, 501, $"{spec.Name} refused: {refused}").ConfigureAwait(false);
                    return;
                }
                _data = FtpDataChannel.Connect(target);
                await ReplyAsync(x, 200, $"{spec.Name} command successful").ConfigureAwait(false);
                return;
        }
    }

    /// <summary>A connection to a data port from an address other than the one expected: refused and logged.</summary>
    void ForeignDataConnection(IPEndPoint from)
    {
        var x = _ctx.Open(_conn, ExchangeKinds.Request);
        x.Request = "(data connection)";
        x.Client = from.ToString();
        x.Deny(PseudoRules.Protocol, $"data connection from {from}, not from the control connection's peer");
        x.Close();
    }

    async Task CloseDataAsync()
    {
        if (_data is { } d)
        {
            _data = null;
            await d.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>RETR, STOR, STOU, APPE, LIST, NLST, MLSD: both data connections, the command, the relay, the final reply.</summary>
    async Task TransferAsync(Exchange x, FtpCommandSpec spec, FtpCommandLine cmd, ReadOnlyMemory<byte> line, string path, bool canonical)
    {
        var client = _data;
        _data = null;
        long rest = _restOffset;
        _restOffset = -1;
        if (client is null)
        {
            x.Reason = "no data connection set up";
            await ReplyAsync(x, 425, "Use PORT, EPRT, PASV or EPSV first").ConfigureAwait(false);
            return;
        }
        await using var clientChannel = client;
        if (_s.Ftp.ClientTlsRequired && !_clientProtP)
        {
            x.Deny(PseudoRules.Protocol, "client_tls: required and data not protected");
            await ReplyAsync(x, 521, "Data connections must be protected: PROT P").ConfigureAwait(false);
            return;
        }
        await EnsureServerAsync().ConfigureAwait(false);
        bool serverPassive = _s.DataMode == FtpDataMode.Passive || (_s.DataMode == FtpDataMode.Keep && client.Listens);
        var (server, error) = serverPassive ? await ServerPassiveAsync().ConfigureAwait(false) : await ServerActiveAsync().ConfigureAwait(false);
        if (server is null)
        {
            x.Reason = error;
            await ReplyAsync(x, 425, $"Cannot open data connection: {error}").ConfigureAwait(false);
            return;
        }
        await using var serverChannel = server;
        if (rest >= 0)
        {
            await SendServerAsync(Encoding.ASCII.GetBytes($"REST {rest}")).ConfigureAwait(false);
            await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
            if (_reply.Code != 350)
            {
                await WriteClientAsync(_reply.Raw).ConfigureAwait(false);
                x.Status = _reply.Code;
                return;
            }
        }
        await SendServerAsync(OutgoingLine(cmd, line, path, canonical)).ConfigureAwait(false);
        await ReadReplyAsync(_cfg.Limits.ResponseTimeout).ConfigureAwait(false);
        if (_reply.Code >= 200)
        {
            // Refused by the server (550 no such file...): relayed as is.
            await WriteClientAsync(_reply.Raw).ConfigureAwait(false);
            x.Status = _reply.Code;
            return;
        }
        var preliminary = _reply.Raw.ToArray();
        var timeout = _s.Ftp.DataTimeout;

        // The server's end (it is ready: it sent 1xx).
        var (serverSocket, serr) = await server.OpenAsync(_server!.LocalEndPoint!.Address, timeout, Ct).ConfigureAwait(false);
        await using var serverData = serverSocket is null ? null : Transport.FromSocket(serverSocket);
        if (serverData is not null && _serverProtP)
        {
            var up = await serverData.UpgradeToClientTlsAsync(_s.UpstreamTlsOptions(_target!.Host), timeout, Ct).ConfigureAwait(false);
            if (!up.Ok) serr = $"TLS with the server's data connection failed: {up.Error}";
        }
        if (serr is not null)
        {
            await FailTransferAsync(x, serverData, $"server data connection: {serr}").ConfigureAwait(false);
            return;
        }

        // The client's end: an active client is connected to before it hears 1xx, a passive one connects when it likes.
        Socket? clientSocket = null;
        string? cerr = null;
        if (!client.Listens) (clientSocket, cerr) = await client.OpenAsync(ControlLocal, timeout, Ct).ConfigureAwait(false);
        if (cerr is null)
        {
            await WriteClientAsync(preliminary).ConfigureAwait(false);
            if (client.Listens) (clientSocket, cerr) = await client.OpenAsync(ControlLocal, timeout, Ct).ConfigureAwait(false);
        }
        await using var clientData = clientSocket is null ? null : Transport.FromSocket(clientSocket);
        if (clientData is not null && _clientProtP)
        {
            var up = await clientData.UpgradeToServerTlsAsync(_s.ClientTls!, timeout, Ct).ConfigureAwait(false);
            if (!up.Ok) cerr = $"TLS on the client's data connection failed: {up.Error}";
        }
        if (cerr is not null)
        {
            await FailTransferAsync(x, serverData, $"client data connection: {cerr}").ConfigureAwait(false);
            return;
        }
        await RelayAsync(x, clientData!, serverData!, spec.Direction == FtpDirection.Upload ? RelayEnd.ClientDone : RelayEnd.UpstreamDone)
            .ConfigureAwait(false);
    }

    /// <summary>A data connection could not be made after the server said 1xx: its end is reset, its final reply eaten, the client told 425.</summary>
    async Task FailTransferAsync(Exchange x, Transport? serverData, string why)
    {
        serverData?.Abort();
        x.Reason = why;
        await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
        await ReplyAsync(x, 425, $"Cannot open data connection: {why}").ConfigureAwait(false);
    }

    /// <summary>
    /// Relays the data while watching the control connection: ABOR stops the transfer at once; any other command
    /// waits until the transfer is over (as it would at a server). Then the server's final reply is relayed.
    /// </summary>
    async Task RelayAsync(Exchange command, Transport clientData, Transport serverData, RelayEnd end)
    {
        // The data connection is a child of the control connection: listed with it, aborted with it. Its record is
        // the transfer's one log line: the command's decision, bytes, duration and the server's final reply.
        var child = _admission.RegisterChild(_conn, clientData, clientData.RemoteEndPoint ?? _conn.Client, clientData.LocalEndPoint);
        child.Target = serverData.RemoteEndPoint?.ToString();
        var x = child.Record;
        x.Request = command.Request;
        x.Upstream = _target?.ToString();
        x.Tls = clientData.Tls?.SslProtocol.ToString();
        if (command.Verdict is not null) x.Decide(new Decision(command.Verdict.Value, command.Rule!, command.Reason));
        _handedOver = true;
        try
        {
            // Over when the data direction is: a client that waits for 226 before closing its end must get it.
            var relay = StreamRelay.RunAsync(clientData, serverData, _cfg.Limits.IdleTimeout, x.Counter, child.Aborted, end);
            Exchange? abor = null;
            while (!relay.IsCompleted)
            {
                _ahead ??= _clientLines.ReadAsync(Ct).AsTask();
                if (await Task.WhenAny(relay, _ahead).ConfigureAwait(false) == relay) break;
                if (_ahead.IsFaulted || _ahead.IsCanceled || _ahead.Result.Status == LineStatus.End)
                {
                    // The client's control connection is gone: the data connection does not outlive it.
                    StopRelay(child, clientData, serverData);
                    await relay.ConfigureAwait(false);
                    x.Reason = "control connection closed during the transfer";
                    return;
                }
                if (_ahead.Result.Status == LineStatus.Line && IsAbor(_ahead.Result.Line.Span))
                {
                    var read = _ahead.Result;
                    _ahead = null;
                    _record.AddIn(read.WireLength);
                    abor = _ctx.Open(_conn, ExchangeKinds.Request);
                    abor.Request = "ABOR";
                    var d = Decide(FtpCommands.Get(FtpVerb.ABOR), null, null);
                    abor.Decide(d);
                    if (!d.Allowed)
                    {
                        await ReplyAsync(abor, 550, $"ABOR: denied by policy: {d.Reason}").ConfigureAwait(false);
                        abor.Close();
                        abor = null;
                        continue;
                    }
                    StopRelay(child, clientData, serverData);
                }
                // Anything else is handled after the transfer.
                await relay.ConfigureAwait(false);
            }
            var result = await relay.ConfigureAwait(false);
            if (result.IdleTimedOut) x.Reason = "data connection idle timeout";
            else if (result.Cut && abor is null) x.Reason = "data connection cut";
            // A cut transfer resets the server's data connection: a server still sending would otherwise wait on a
            // socket that was only shut down, and never send the final reply read below.
            if (result.Cut && abor is null) serverData.Abort();
            if (abor is not null)
            {
                x.Reason = "aborted by the client (ABOR)";
                await AbortAsync(x, abor).ConfigureAwait(false);
                return;
            }
            await ReadFinalReplyAsync(forward: true, x).ConfigureAwait(false);
        }
        finally
        {
            _admission.ReleaseChild(child);
        }
    }

    static void StopRelay(ClientConnection child, Transport a, Transport b)
    {
        // Resets, so that the server knows the transfer was cut, not complete.
        b.Abort();
        a.Abort();
        child.Abort();
    }

    /// <summary>ABOR towards the server: its two replies (the transfer's end, then ABOR's own) go to the client.</summary>
    async Task AbortAsync(Exchange transfer, Exchange abor)
    {
        try
        {
            await SendServerAsync("ABOR"u8.ToArray()).ConfigureAwait(false);
            await ReadFinalReplyAsync(forward: true, transfer).ConfigureAwait(false);
            await ReadFinalReplyAsync(forward: true, abor).ConfigureAwait(false);
        }
        finally
        {
            abor.Upstream = _target?.ToString();
            abor.Close();
        }
    }

    static bool IsAbor(ReadOnlySpan<byte> line) =>
        FtpCommandParser.Parse(line, out var c) == FtpParse.Ok && c.Spec!.Verb == FtpVerb.ABOR;

    /// <summary>
    /// Passive towards the server: EPSV (or PASV where EPSV is unknown), then a connection to the port it names at
    /// the control connection's own address. A PASV reply's address is ignored: the server cannot send the
    /// gateway elsewhere.
    /// </summary>
    async Task<(FtpDataChannel? Channel, string? Error)> ServerPassiveAsync()
    {
        var serverAddress = _server!.RemoteEndPoint!.Address;
        int port = 0;
        if (!_serverNoEpsv)
        {
            await SendServerAsync("EPSV"u8.ToArray()).ConfigureAwait(false);
            await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
            if (_reply.Code == 229)
            {
                if (!FtpAddress.TryParseEpsvReply(_reply.FirstText, out port)) return (null, $"unreadable EPSV reply: {_reply.Summary()}");
            }
            else if (_reply.Code is 500 or 501 or 502) _serverNoEpsv = true;
            else return (null, $"server refused EPSV: {_reply.Summary()}");
        }
        if (port == 0)
        {
            if (serverAddress.AddressFamily == AddressFamily.InterNetworkV6 && !serverAddress.IsIPv4MappedToIPv6)
                return (null, "the server has no EPSV and PASV cannot work over IPv6");
            await SendServerAsync("PASV"u8.ToArray()).ConfigureAwait(false);
            await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
            if (_reply.Code != 227 || !FtpAddress.TryParsePasvReply(_reply.FirstText, out var ep))
                return (null, $"server refused PASV: {_reply.Summary()}");
            port = ep!.Port;
        }
        var channel = FtpDataChannel.Connect(new IPEndPoint(serverAddress, port));
        // Connect now, before the transfer command, as passive clients do.
        var (socket, error) = await channel.OpenAsync(_server.LocalEndPoint!.Address, _s.Ftp.DataTimeout, Ct).ConfigureAwait(false);
        if (socket is null) return (null, error);
        return (FtpDataChannel.Connected(socket), null);
    }

    /// <summary>Active towards the server: the gateway listens on its side of the control connection and says where (PORT/EPRT).</summary>
    async Task<(FtpDataChannel? Channel, string? Error)> ServerActiveAsync()
    {
        var local = _server!.LocalEndPoint!;
        var serverAddress = _server.RemoteEndPoint!.Address;
        var listener = new Socket(local.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(new IPEndPoint(local.Address, 0));
            listener.Listen(1);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            return (null, $"cannot listen for the server: {e.SocketErrorCode}");
        }
        var channel = FtpDataChannel.Listen(listener, serverAddress, _s.Ftp.DataTimeout, ForeignDataConnection);
        var ep = (IPEndPoint)listener.LocalEndPoint!;
        await SendServerAsync(Encoding.ASCII.GetBytes(FtpAddress.ActiveCommand(ep, extended: false))).ConfigureAwait(false);
        await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
        if (_reply.Code is < 200 or >= 300)
        {
            await channel.DisposeAsync().ConfigureAwait(false);
            return (null, $"server refused {(ep.AddressFamily == AddressFamily.InterNetwork ? "PORT" : "EPRT")}: {_reply.Summary()}");
        }
        return (channel, null);
    }
}
