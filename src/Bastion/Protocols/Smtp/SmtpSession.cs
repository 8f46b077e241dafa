using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;
using System.Text;
using Bastion.Protocols.Http.Io;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;
using System.Runtime.CompilerServices;

namespace Bastion.Protocols.Smtp;

/// <summary>
/// One client's SMTP session (SPEC 3, smtp). The gateway is the server to the client and the client to the MTA:
/// accept → connect the upstream and greet with the gateway's banner → read and parse each command → ask the
/// policy at MAIL, each RCPT and the end of data → relay to the server one command at a time → answer the client
/// with the server's reply (a message is accepted only when the server accepted it) → log each decision and each
/// message. PIPELINING towards the client is the gateway's own: replies are written in order and sent when the
/// client has nothing more queued.
/// </summary>
sealed partial class SmtpSession(SmtpListener listener, ListenerContext ctx, ClientConnection conn)
{
    readonly ListenerConfig _cfg = ctx.Config;
    readonly SmtpConfig _smtp = ctx.Config.Smtp ?? SmtpListener.DefaultConfig;
    readonly RequestAttributes _attrs = new() { Source = conn.Client.Address, User = conn.User };
    /// <summary>The user a trusted PROXY header named, if any; AUTH replaces it until STARTTLS.</summary>
    readonly string? _proxyUser = conn.User;
    readonly SmtpCommand _cmd = new();
    readonly CancellationTokenSource _idle = new();
    Transport Client => conn.Transport;
    /// <summary>Where commands are read: the transport's pipe, or, after a message's last large read ran past its end
    /// of data (a pipelining client), a pipe that gives those bytes first (<see cref="_leftover"/>).</summary>
    PipeReader _in = null!;
    LeftoverStream? _leftover;
    LineReader _lines = null!;
    Exchange _connX = null!;

    SmtpUpstream? _up;
    bool _upHello;
    bool _upInTransaction;
    string? _lastUpstreamError;
    string? _upTls;
    string? _clientTls;
    CancellationTokenSource _linked = null!;

    // Session state (reset by EHLO and STARTTLS).
    string? _helo;
    bool _esmtp;
    Extensions.Offer _offer;
    CommandOptions _opts;

    // The transaction (reset by RSET, EHLO, and the end of each message).
    MailPath? _from;
    long _declared = -1;
    MailBody _body;
    bool _utf8;
    readonly List<string> _rcpts = [];
    int _denied;
    int _tried;

    SmtpListener.Names? _names;
    SmtpListener.Names Names => _names ??= listener.NamesFor(_smtp);
    string Host => Names.Host;

    /// <summary>The last request record, reopened when it is closed: a message's MAIL, RCPT and DATA records are one object.</summary>
    Exchange? _spare;

    Exchange OpenRequest() => _spare is { IsClosed: true } x ? x.Reopen() : (_spare = ctx.Open(conn, ExchangeKinds.Request));

    public async Task RunAsync()
    {
        _connX = conn.Record;   // the connection's own record: one closed line (the admission writes it if the session does not)
        _linked = CancellationTokenSource.CreateLinkedTokenSource(conn.Aborted, _idle.Token);
        _connX.Request = $"SMTP {_cfg.Upstream}";
        _in = Client.Input;
        _lines = new LineReader(_in, _smtp.MaxLine - 2);
        _opts = PlainOptions;
        try
        {
            if (!await ConnectUpstreamAsync().ConfigureAwait(false))
            {
                await ReplyAsync($"421 4.4.1 {Host} service not available, try again later", flush: true).ConfigureAwait(false);
                _connX.Status = 421;
                _connX.Reason = _lastUpstreamError;
                return;
            }
            await ReplyAsync(Names.Greeting, flush: true).ConfigureAwait(false);
            while (await NextCommandAsync().ConfigureAwait(false)) { }
        }
        finally
        {
            AbandonChunks("session ended between BDAT chunks");
            if (_up is { } up)
            {
                try { await up.QuitAsync().ConfigureAwait(false); }
                catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException
                    or InvalidOperationException or OperationCanceledException or NotSupportedException)
                { }
                await up.DisposeAsync().ConfigureAwait(false);
            }
            _connX.Tls = TlsText();
            _connX.Close();
            _linked.Dispose();
            _idle.Dispose();
        }
    }

    /// <summary>Reads, parses and answers one command; false when the session is over.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> NextCommandAsync()
    {
        // Replies to pipelined commands go out together, once the client has nothing more queued.
        if (!_lines.HasBuffered) await FlushAsync().ConfigureAwait(false);
        if (await ReadLineAsync().ConfigureAwait(false) is not { } read) return false;
        switch (read.Status)
        {
            case LineStatus.TooLong:
                await Refuse(500, "5.5.2", $"line too long (max {_smtp.MaxLine} octets)").ConfigureAwait(false);
                return true;
        }
        if (read.Flags != LineFlags.None)
        {
            await Refuse(500, "5.5.2", "bare CR or LF in a command line; lines end with CRLF").ConfigureAwait(false);
            return true;
        }
        var err = SmtpCommandParser.Parse(read.Line.Span, _opts, _cmd);
        if (err.IsError)
        {
            await ReplyAsync($"{err.Code} {err.Enhanced} {err.Reason}").ConfigureAwait(false);
            return true;
        }
        switch (_cmd.Verb)
        {
            case SmtpVerb.Helo or SmtpVerb.Ehlo: return await HelloAsync(_cmd.Verb == SmtpVerb.Ehlo, _cmd.Argument!).ConfigureAwait(false);
            case SmtpVerb.Mail: return await MailAsync().ConfigureAwait(false);
            case SmtpVerb.Rcpt: return await RcptAsync().ConfigureAwait(false);
            case SmtpVerb.Data: return await DataAsync().ConfigureAwait(false);
            case SmtpVerb.Bdat: return await BdatAsync().ConfigureAwait(false);
            case SmtpVerb.Rset:
                if (!await ResetTransactionAsync().ConfigureAwait(false)) return await UpstreamLostAsync().ConfigureAwait(false);
                await ReplyAsync("250 2.0.0 OK").ConfigureAwait(false);
                return true;
            case SmtpVerb.Noop: await ReplyAsync("250 2.0.0 OK").ConfigureAwait(false); return true;
            case SmtpVerb.Help: await ReplyAsync("214 2.0.0 See RFC 5321").ConfigureAwait(false); return true;
            case SmtpVerb.Vrfy: await ReplyAsync("252 2.5.2 Cannot VRFY user; send mail and delivery will be attempted").ConfigureAwait(false); return true;
            case SmtpVerb.Expn: await ReplyAsync("502 5.5.1 EXPN not available").ConfigureAwait(false); return true;
            case SmtpVerb.Auth: return await AuthAsync().ConfigureAwait(false);
            case SmtpVerb.StartTls: return await StartTlsAsync().ConfigureAwait(false);
            case SmtpVerb.Quit:
                await ReplyAsync(Names.Closing, flush: true).ConfigureAwait(false);
                return false;
            default:
                await ReplyAsync("502 5.5.1 command not implemented").ConfigureAwait(false);
                return true;
        }
    }

    /// <summary>One line from the client within the idle timeout; null when the client left or timed out (421 sent).</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<LineRead?> ReadLineAsync()
    {
        LineRead read;
        _idle.TryReset();
        _idle.CancelAfter(_cfg.Limits.IdleTimeout);
        try { read = await _lines.ReadAsync(_linked.Token).ConfigureAwait(false); }
        catch (OperationCanceledException) when (_idle.IsCancellationRequested && !conn.Aborted.IsCancellationRequested)
        {
            _connX.Reason = "idle timeout";
            await ReplyAsync($"421 4.4.2 {Host} idle timeout, closing connection", flush: true).ConfigureAwait(false);
            return null;
        }
        _connX.AddIn(read.WireLength);
        return read.Status == LineStatus.End ? null : read;
    }

    /// <summary>Before EHLO (and after STARTTLS) no extension's parameters are accepted.</summary>
    CommandOptions PlainOptions => new(false, false, false, false, _smtp.AllowAddressHacks);

    // ---- session commands -------------------------------------------------------------------------------------

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> HelloAsync(bool esmtp, string name)
    {
        if (!await ResetTransactionAsync().ConfigureAwait(false)) return await UpstreamLostAsync().ConfigureAwait(false);
        if (!await EnsureUpstreamAsync(name).ConfigureAwait(false))
        {
            await ReplyAsync($"421 4.4.1 {Host} service not available, try again later", flush: true).ConfigureAwait(false);
            _connX.Status = 421;
            _connX.Reason = _lastUpstreamError;
            return false;
        }
        _helo = name;
        _esmtp = esmtp;
        _offer = esmtp
            ? Extensions.Decide(listener.AllowedExtensions(_smtp), _up!.Capabilities, listener.ServerCertificate(ctx.Runtime.Config, _smtp) is not null,
                Client.IsTls, _cfg.Authenticate, _smtp.AuthWithoutTls)
            : default;
        _opts = new CommandOptions(_offer.Size, _offer.EightBitMime, _offer.SmtpUtf8, _offer.Chunking, _smtp.AllowAddressHacks, _offer.Auth);
        if (!esmtp)
        {
            await ReplyAsync($"250 {Host}").ConfigureAwait(false);
            return true;
        }
        var lines = Extensions.EhloLines(Host, name, _offer, _smtp.MaxMessage);
        await ReplyAsync(new SmtpReply(250, lines)).ConfigureAwait(false);
        return true;
    }

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> StartTlsAsync()
    {
        if (Client.IsTls) { await ReplyAsync("503 5.5.1 TLS already active").ConfigureAwait(false); return true; }
        if (!_offer.StartTls) { await ReplyAsync("454 4.7.0 TLS not available").ConfigureAwait(false); return true; }
        var cert = listener.ServerCertificate(ctx.Runtime.Config, _smtp)!;
        await ReplyAsync("220 2.0.0 Ready to start TLS", flush: true).ConfigureAwait(false);
        var options = new SslServerAuthenticationOptions { ServerCertificateContext = cert };
        int leftover = DropLeftover();
        var up = await Client.UpgradeToServerTlsAsync(options, _cfg.Limits.HeaderTimeout, conn.Aborted).ConfigureAwait(false);
        if (up.DiscardedBytes + leftover > 0)
        {
            // CVE-2011-0411: commands sent in the clear after STARTTLS must never be read as if they came over TLS.
            var x = OpenRequest();
            x.Request = "STARTTLS";
            x.Deny(PseudoRules.Protocol, $"{up.DiscardedBytes + leftover} bytes pipelined after STARTTLS were discarded (CVE-2011-0411)");
            x.Close();
        }
        if (!up.Ok)
        {
            _connX.Reason = up.Error;
            return false;
        }
        _in = Client.Input;
        _lines = new LineReader(_in, _smtp.MaxLine - 2);
        _clientTls = Client.Tls is { } tls ? SmtpUpstream.TlsName(tls.SslProtocol) : null;
        // RFC 3207 4.2: everything learnt before TLS is forgotten; the client says EHLO again.
        if (!await ResetTransactionAsync().ConfigureAwait(false)) return await UpstreamLostAsync().ConfigureAwait(false);
        _helo = null;
        _offer = default;
        _opts = PlainOptions;
        ForgetLogin();
        return true;
    }

    // ---- the transaction --------------------------------------------------------------------------------------

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> MailAsync()
    {
        if (_helo is null) { await ReplyAsync("503 5.5.1 send HELO/EHLO first").ConfigureAwait(false); return true; }
        if (_from is not null) { await ReplyAsync("503 5.5.1 nested MAIL command").ConfigureAwait(false); return true; }
        var path = _cmd.Path!;
        var x = OpenRequest();
        x.Request = $"MAIL FROM:{path.Wire}";
        try
        {
            if (_cfg.Authenticate && _smtp.Auth == "required" && _authUser is null)
            {
                x.Deny(PseudoRules.Authenticate, "authentication required (smtp.auth: required)");
                return await Answer(x, 530, "5.7.0", "authentication required").ConfigureAwait(false);
            }
            if (_cmd.DeclaredSize > _smtp.MaxMessage)
            {
                x.Deny("smtp.max_message", $"declared size {_cmd.DeclaredSize} exceeds {_smtp.MaxMessage}");
                return await Answer(x, 552, "5.3.4", "message size exceeds fixed maximum message size").ConfigureAwait(false);
            }
            SmtpAttributes.ForMail(_attrs, path, _cmd.DeclaredSize);
            var d = ctx.Policy.EvaluateAll(_attrs);
            x.Decide(d);
            if (!d.Allowed) return await Answer(x, 550, "5.7.1", d.Reason ?? "denied by policy").ConfigureAwait(false);
            if (!await EnsureUpstreamAsync(_helo).ConfigureAwait(false))
            {
                x.Reason = _lastUpstreamError;
                return await Answer(x, 451, "4.4.1", "upstream not available, try again later").ConfigureAwait(false);
            }
            var caps = _up!.Capabilities;
            var line = new StringBuilder("MAIL FROM:").Append(path.Wire);
            if (_cmd.DeclaredSize >= 0 && caps.Size >= 0) line.Append(" SIZE=").Append(_cmd.DeclaredSize);
            if (_cmd.Body != MailBody.None && caps.EightBitMime) line.Append(_cmd.Body == MailBody.EightBitMime ? " BODY=8BITMIME" : " BODY=7BIT");
            if (_cmd.SmtpUtf8 && caps.SmtpUtf8) line.Append(" SMTPUTF8");
            var reply = await UpstreamCommandAsync(line.ToString(), x).ConfigureAwait(false);
            if (reply is null) return await UpstreamLostAsync(x).ConfigureAwait(false);
            _upInTransaction = true;
            if (reply.IsPositive)
            {
                _from = path;
                _declared = _cmd.DeclaredSize;
                _body = _cmd.Body;
                _utf8 = _cmd.SmtpUtf8;
            }
            return await RelayAsync(x, reply).ConfigureAwait(false);
        }
        finally { x.Close(); }
    }

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> RcptAsync()
    {
        if (_from is null) { await ReplyAsync("503 5.5.1 need MAIL before RCPT").ConfigureAwait(false); return true; }
        var path = _cmd.Path!;
        _tried++;
        var x = OpenRequest();
        var line = $"RCPT TO:{path.Wire}";   // the log's request and the server's command alike
        x.Request = line;
        try
        {
            if (_rcpts.Count >= _smtp.MaxRecipients)
            {
                x.Deny("smtp.max_recipients", $"more than {_smtp.MaxRecipients} recipients");
                return await Answer(x, 452, "4.5.3", "too many recipients").ConfigureAwait(false);
            }
            SmtpAttributes.ForRcpt(_attrs, _from, path, _declared);
            var d = ctx.Policy.EvaluateAll(_attrs);
            x.Decide(d);
            if (!d.Allowed)
            {
                _denied++;
                return await Answer(x, 550, "5.7.1", d.Reason ?? "denied by policy").ConfigureAwait(false);
            }
            var reply = await UpstreamCommandAsync(line, x).ConfigureAwait(false);
            if (reply is null) return await UpstreamLostAsync(x).ConfigureAwait(false);
            if (reply.IsPositive) _rcpts.Add(path.Address);
            return await RelayAsync(x, reply).ConfigureAwait(false);
        }
        finally { x.Close(); }
    }

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> DataAsync()
    {
        if (_from is null) { await ReplyAsync("503 5.5.1 need MAIL before DATA").ConfigureAwait(false); return true; }
        if (_chunkX is not null) { await ReplyAsync("503 5.5.1 DATA after BDAT; finish with BDAT LAST").ConfigureAwait(false); return true; }
        if (_rcpts.Count == 0)
        {
            await ReplyAsync(_tried > 0 ? "554 5.5.1 no valid recipients" : "503 5.5.1 need RCPT before DATA").ConfigureAwait(false);
            return true;
        }
        var x = OpenRequest();
        x.Request = MessageText("DATA");
        try
        {
            var go = await UpstreamCommandAsync("DATA", x).ConfigureAwait(false);
            if (go is null) return await UpstreamLostAsync(x).ConfigureAwait(false);
            if (go.Code != 354)
            {
                x.Deny(PseudoRules.Protocol, $"upstream refused DATA: {go}");
                await ResetLocalAsync().ConfigureAwait(false);
                return await RelayAsync(x, go).ConfigureAwait(false);
            }
            await ReplyAsync("354 End data with <CR><LF>.<CR><LF>", flush: true).ConfigureAwait(false);
            var up = _up!;
            WriteReceived(up, x);
            bool ended;
            DataScanner scanner;
            string? lost;
            try { (ended, scanner, lost) = await StreamDataAsync(up, x).ConfigureAwait(false); }
            catch
            {
                // Idle timeout or a vanished client mid-message: the server must not deliver a half.
                DropUpstream(abort: true);
                x.Deny(PseudoRules.Protocol, "the client stopped sending during DATA");
                throw;
            }
            if (!ended)
            {
                // The client went away mid-message: the server must not deliver a half.
                DropUpstream(abort: true);
                x.Deny(PseudoRules.Protocol, "client closed the connection during DATA");
                return false;
            }
            return await EndMessageAsync(x, scanner, lost).ConfigureAwait(false);
        }
        finally { x.Close(); }
    }

    /// <summary>
    /// The end of a message, DATA or BDAT alike: a refusal from the scan, a lost server, or the policy with every rule
    /// (`command: DATA`, the real size). Refused, the server's session is dropped without an end of data, so it
    /// discards the partial message; allowed, the server gets the end of data and its reply decides the client's.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> EndMessageAsync(Exchange x, MessageFilter check, string? lost)
    {
        if (check.Refusal is { } refusal)
        {
            DropUpstream(abort: true);
            x.Deny(check.RefusalCode == 552 ? "smtp.max_message" : PseudoRules.Protocol, refusal);
            await ResetLocalAsync().ConfigureAwait(false);
            return await Answer(x, check.RefusalCode, check.RefusalEnhanced, refusal).ConfigureAwait(false);
        }
        if (lost is not null) return await LostInDataAsync(x, lost).ConfigureAwait(false);
        SmtpAttributes.ForMessage(_attrs, _from!, _rcpts, check.Size);
        var d = ctx.Policy.EvaluateAll(_attrs);
        x.Decide(d);
        if (!d.Allowed)
        {
            DropUpstream(abort: true);
            await ResetLocalAsync().ConfigureAwait(false);
            return await Answer(x, 550, "5.7.1", d.Reason ?? "denied by policy").ConfigureAwait(false);
        }
        // Only now does the server see the end of data (in one send with what is left of the message): its reply
        // decides the client's. A server gone before it has read the end is a lost message like one gone mid-way.
        var up = _up!;
        x.Upstream = up.TargetText;
        up.WriteLine(".");
        if (await up.FlushAsync(conn.Aborted).ConfigureAwait(false) is { } gone) return await LostInDataAsync(x, gone).ConfigureAwait(false);
        var (done, error) = await up.ReadReplyAsync(conn.Aborted).ConfigureAwait(false);
        await ResetLocalAsync().ConfigureAwait(false);
        _upInTransaction = false;
        if (done is null)
        {
            _lastUpstreamError = error;
            return await UpstreamLostAsync(x).ConfigureAwait(false);
        }
        return await RelayAsync(x, done).ConfigureAwait(false);
    }

    /// <summary>The server went away while the message streamed: nothing was accepted, the client may try again.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> LostInDataAsync(Exchange x, string lost)
    {
        DropUpstream(abort: true);
        x.Reason = lost;
        await ResetLocalAsync().ConfigureAwait(false);
        return await Answer(x, 451, "4.4.2", "upstream connection lost, message not accepted; try again later").ConfigureAwait(false);
    }

    /// <summary>
    /// Relays the message from the client's pipe to the server through the <see cref="DataScanner"/>, up to the
    /// client's end of data. False when the client closed first; a server that fails mid-way is noted and the rest
    /// is read and dropped, so that the session stays in step with the client.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<(bool Ended, DataScanner Scanner, string? Lost)> StreamDataAsync(SmtpUpstream up, Exchange x)
    {
        var scanner = listener.Scanner(_smtp);
        scanner.Reset();
        IBufferWriter<byte> sink = up.Output;
        string? lost = null;
        byte[]? big = null;
        long seen = 0;
        try
        {
            while (true)
            {
                _idle.TryReset();
                _idle.CancelAfter(_cfg.Limits.IdleTimeout);
                ReadOnlySequence<byte> buffer;
                bool completed, direct = false;
                if (_in.TryRead(out var ready))
                {
                    buffer = ready.Buffer;
                    completed = ready.IsCompleted;
                }
                else if (seen >= SmtpListener.MessageBufferSize / 2 && Client.Socket is not null && TakeBackTransportPipe())
                {
                    // Past its first 32 KiB with nothing buffered, a message is read straight off the stream in large
                    // pieces (a quarter of the receives of the pipe's 16 KiB reads, and of the window updates each
                    // sends back to the client), into a buffer held for this message only. A small message stays on
                    // the pipe: renting the large buffer cost it more than the reads it saves.
                    big ??= ArrayPool<byte>.Shared.Rent(SmtpListener.MessageBufferSize);
                    int n = await Client.Stream.ReadAsync(big, _linked.Token).ConfigureAwait(false);
                    buffer = new ReadOnlySequence<byte>(big, 0, n);
                    completed = n == 0;
                    direct = true;
                }
                else
                {
                    var result = await _in.ReadAsync(_linked.Token).ConfigureAwait(false);
                    buffer = result.Buffer;
                    completed = result.IsCompleted;
                }
                long offset = 0;
                bool end = false;
                foreach (var segment in buffer)
                {
                    var st = scanner.Feed(segment.Span, sink, out int used);
                    offset += used;
                    if (st == DataStatus.End) { end = true; break; }
                }
                if (!direct) _in.AdvanceTo(end ? buffer.GetPosition(offset) : buffer.End);
                else if (end && offset < buffer.Length) KeepLeftover(big.AsSpan((int)offset, (int)(buffer.Length - offset)));
                x.AddIn(offset);
                seen += offset;
                // The last part of the message waits in the pipe and goes out with the end of data (one send, not two),
                // or never, when the message is refused at its end. Before that, data goes out in sends of about
                // MessageBufferSize, not one per read.
                if (!end && lost is null && scanner.Refusal is null && up.Output is var o
                    && (!o.CanGetUnflushedBytes || o.UnflushedBytes >= SmtpListener.MessageBufferSize / 2))
                {
                    lost = await up.FlushAsync(conn.Aborted).ConfigureAwait(false);
                    if (lost is not null) sink = Discard.Instance;
                }
                if (end) return (true, scanner, lost);
                if (completed) return (false, scanner, lost);
            }
        }
        finally
        {
            if (big is not null) ArrayPool<byte>.Shared.Return(big);
        }
    }

    /// <summary>
    /// True when commands come straight from the transport's pipe again (nothing left over from an earlier message
    /// is waiting), so that the stream may be read directly.
    /// </summary>
    bool TakeBackTransportPipe()
    {
        if (_leftover is null) return true;
        if (_leftover.Remaining > 0) return false;
        // Everything left over was read and consumed (TryRead found nothing): the stream is the transport's again.
        _in.Complete();
        _leftover = null;
        _in = Client.Input;
        _lines = new LineReader(_in, _smtp.MaxLine - 2);
        return true;
    }

    /// <summary>Bytes a direct read took past the end of data: the next commands read them first.</summary>
    void KeepLeftover(ReadOnlySpan<byte> rest)
    {
        _leftover = new LeftoverStream(rest.ToArray(), Client.Stream);
        _in = PipeReader.Create(_leftover, new StreamPipeReaderOptions(bufferSize: Transport.DefaultPipeBufferSize, minimumReadSize: 4096, leaveOpen: true));
        _lines = new LineReader(_in, _smtp.MaxLine - 2);
    }

    /// <summary>Bytes left over from a message and not yet consumed, dropped (STARTTLS: they came in the clear).</summary>
    int DropLeftover()
    {
        if (_leftover is null) return 0;
        int n = _leftover.Remaining;
        if (_in.TryRead(out var r))
        {
            n += (int)r.Buffer.Length;
            _in.AdvanceTo(r.Buffer.End);
        }
        _in.Complete();
        _leftover = null;
        _in = Client.Input;
        return n;
    }

    void WriteReceived(SmtpUpstream up, Exchange x) =>
        ReceivedHeader.Write(up.Output, _helo!, conn.Client.Address, Host, _esmtp, Client.IsTls, _authUser is not null, x.Id,
            _rcpts.Count == 1 ? _rcpts[0] : null, DateTimeOffset.Now);

    /// <summary>RSET towards the server when it has a transaction open; false when the server is gone.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> ResetTransactionAsync()
    {
        // Between BDAT chunks the server is inside DATA: RSET would be message text. Dropping it discards the message.
        AbandonChunks("transaction reset between BDAT chunks");
        bool ok = true;
        if (_upInTransaction && _up is not null)
        {
            var (r, err) = await _up.CommandAsync("RSET", conn.Aborted).ConfigureAwait(false);
            if (r is null)
            {
                _lastUpstreamError = err;
                DropUpstream(abort: true);
                ok = false;
            }
        }
        await ResetLocalAsync().ConfigureAwait(false);
        return ok;
    }

    Task ResetLocalAsync()
    {
        _upInTransaction = false;
        _from = null;
        _declared = -1;
        _body = MailBody.None;
        _utf8 = false;
        _rcpts.Clear();
        _denied = 0;
        _tried = 0;
        return Task.CompletedTask;
    }

    string MessageText(string verb)
    {
        var sb = new StringBuilder(verb).Append(" from=").Append(_from!.Wire).Append(" to=");
        for (int i = 0; i < _rcpts.Count; i++) sb.Append(i == 0 ? "<" : ",<").Append(_rcpts[i]).Append('>');
        if (_denied > 0) sb.Append(" denied=").Append(_denied);
        return sb.ToString();
    }

    // ---- the upstream -----------------------------------------------------------------------------------------

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> ConnectUpstreamAsync()
    {
        var targets = listener.Targets(ctx.Runtime.Config, _cfg);
        var opened = await SmtpUpstream.OpenAsync(targets, listener.NextStart(targets.Count), _cfg.Limits.ConnectTimeout,
            _cfg.Limits.ResponseTimeout, conn.Aborted).ConfigureAwait(false);
        if (opened.Upstream is null)
        {
            _lastUpstreamError = opened.Error;
            return false;
        }
        _up = opened.Upstream;
        _upHello = false;
        conn.Target = _up.TargetText;
        _connX.Upstream = conn.Target;
        return true;
    }

    /// <summary>An upstream session that has said EHLO: the one open, or a new one after a message was aborted.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> EnsureUpstreamAsync(string name)
    {
        if (_up is null && !await ConnectUpstreamAsync().ConfigureAwait(false)) return false;
        if (_upHello) return true;
        var error = await _up!.HelloAsync(name, _smtp.UpstreamTls, ctx.Runtime.Config, _smtp, conn.Aborted).ConfigureAwait(false);
        if (error is not null)
        {
            _lastUpstreamError = error;
            DropUpstream(abort: false);
            return false;
        }
        _upHello = true;
        _upTls = _up.TlsVersion;
        return true;
    }

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<SmtpReply?> UpstreamCommandAsync(string line, Exchange x)
    {
        x.Upstream = _up!.TargetText;
        var (reply, error) = await _up.CommandAsync(line, conn.Aborted).ConfigureAwait(false);
        if (reply is null) _lastUpstreamError = error;
        return reply;
    }

    /// <summary>The server went away or sent garbage: the client gets 421 and the session ends (nothing was accepted).</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> UpstreamLostAsync(Exchange? x = null)
    {
        DropUpstream(abort: true);
        if (x is not null)
        {
            x.Reason = _lastUpstreamError;
            x.Status = 421;
        }
        _connX.Reason = _lastUpstreamError;
        await ReplyAsync($"421 4.4.2 {Host} upstream connection lost, closing; try again later", flush: true).ConfigureAwait(false);
        return false;
    }

    void DropUpstream(bool abort)
    {
        if (_up is not { } up) return;
        _up = null;
        _upHello = false;
        _upInTransaction = false;
        if (abort) up.Abort();
        _ = up.DisposeAsync().AsTask();
    }

    // ---- replies ----------------------------------------------------------------------------------------------

    /// <summary>The server's reply, relayed to the client; a 421 from the server ends the session too.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> RelayAsync(Exchange x, SmtpReply reply)
    {
        x.Status = reply.Code;
        if (!reply.IsPositive && x.Reason is null) x.Reason = $"upstream: {reply}";
        await ReplyAsync(reply, flush: reply.Code == 421).ConfigureAwait(false);
        if (reply.Code == 421)
        {
            DropUpstream(abort: false);
            return false;
        }
        return true;
    }

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> Answer(Exchange x, int code, string enhanced, string text)
    {
        x.Status = code;
        await ReplyAsync($"{code} {enhanced} {Sanitize(text)}").ConfigureAwait(false);
        return true;
    }

    [AsyncMethodBuilder(typeof(PooledBuilder))]
    async ValueTask Refuse(int code, string enhanced, string text)
    {
        var x = OpenRequest();
        x.Request = "(command)";
        x.Deny(PseudoRules.Protocol, text);
        x.Status = code;
        x.Close();
        await ReplyAsync($"{code} {enhanced} {text}").ConfigureAwait(false);
    }

    /// <summary>Queues a reply for the client (encoded straight into its pipe); sent at the next flush.</summary>
    ValueTask ReplyAsync(string text, bool raw = false, bool flush = false)
    {
        var output = Client.Output;
        var span = output.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length) + 2);
        int n = Encoding.UTF8.GetBytes(text, span);
        if (!raw)
        {
            span[n++] = (byte)'\r';
            span[n++] = (byte)'\n';
        }
        output.Advance(n);
        _connX.AddOut(n);
        return flush ? FlushAsync() : ValueTask.CompletedTask;
    }

    ValueTask ReplyAsync(SmtpReply reply, bool flush = false)
    {
        _connX.AddOut(reply.WriteTo(Client.Output));
        return flush ? FlushAsync() : ValueTask.CompletedTask;
    }

    async ValueTask FlushAsync() => await Client.Output.FlushAsync(conn.Aborted).ConfigureAwait(false);

    /// <summary>Policy reasons come from the config: keep them on one printable line.</summary>
    static string Sanitize(string s)
    {
        Span<char> buf = s.Length <= 256 ? stackalloc char[s.Length] : new char[s.Length];
        for (int i = 0; i < s.Length; i++) buf[i] = s[i] is < ' ' or '\u007f' ? ' ' : s[i];
        return new string(buf);
    }

    string TlsText()
    {
        // Read from fields: the streams may be disposed by now.
        return $"client={_clientTls ?? "none"} upstream={_upTls ?? "none"}";
    }

    /// <summary>Where message bytes go once the server is gone: nowhere, in constant memory.</summary>
    sealed class Discard : IBufferWriter<byte>
    {
        public static readonly Discard Instance = new();
        readonly byte[] _buf = new byte[64 * 1024];

        public void Advance(int count) { }

        public Memory<byte> GetMemory(int sizeHint = 0) => sizeHint <= _buf.Length ? _buf : new byte[sizeHint];

        public Span<byte> GetSpan(int sizeHint = 0) => sizeHint <= _buf.Length ? _buf : new byte[sizeHint];
    }
}
