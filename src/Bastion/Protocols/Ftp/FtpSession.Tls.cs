using Bastion.Gateway;

namespace Bastion.Protocols.Ftp;

// FTPS towards the client (RFC 4217): AUTH TLS, PBSZ, PROT; CCC is refused. Towards the server see Upstream.cs.
public sealed partial class FtpSession
{
    bool _clientPbsz;
    /// <summary>PROT P: the client's data connections are TLS.</summary>
    bool _clientProtP;

    /// <returns>False when the session cannot go on (a failed handshake leaves no usable control connection).</returns>
    async Task<bool> SecurityAsync(Exchange x, FtpCommandSpec spec, FtpCommandLine cmd)
    {
        switch (spec.Verb)
        {
            case FtpVerb.AUTH:
                if (_s.ClientTls is null)
                {
                    await ReplyAsync(x, 502, "AUTH not available: no certificate configured").ConfigureAwait(false);
                    return true;
                }
                if (_client.IsTls)
                {
                    await ReplyAsync(x, 503, "Already using TLS").ConfigureAwait(false);
                    return true;
                }
                await ReplyAsync(x, 234, "AUTH TLS successful").ConfigureAwait(false);
                // Bytes the client sent behind AUTH before the handshake are dropped, never read as commands (CVE-2011-0411).
                var up = await _client.UpgradeToServerTlsAsync(_s.ClientTls, _cfg.Limits.HeaderTimeout, Ct).ConfigureAwait(false);
                if (up.DiscardedBytes > 0) x.Reason = $"{up.DiscardedBytes} bytes sent before the TLS handshake discarded";
                if (!up.Ok)
                {
                    x.Reason = x.Reason is null ? up.Error : $"{x.Reason}; {up.Error}";
                    _endReason = up.Error;
                    return false;
                }
                x.Tls = _client.Tls!.SslProtocol.ToString();
                _clientLines = new LineReader(_client.Input, _s.Ftp.MaxLine);
                _clientPbsz = false;
                _clientProtP = false;
                return true;
            case FtpVerb.PBSZ:
                if (!_client.IsTls)
                {
                    await ReplyAsync(x, 503, "PBSZ needs AUTH TLS first").ConfigureAwait(false);
                    return true;
                }
                _clientPbsz = true;
                await ReplyAsync(x, 200, "PBSZ=0").ConfigureAwait(false);
                return true;
            case FtpVerb.PROT:
                if (!_client.IsTls || !_clientPbsz)
                {
                    await ReplyAsync(x, 503, "PROT needs AUTH TLS and PBSZ first").ConfigureAwait(false);
                    return true;
                }
                switch (cmd.Letter)
                {
                    case (byte)'P':
                        _clientProtP = true;
                        await ReplyAsync(x, 200, "Protection level set to P").ConfigureAwait(false);
                        return true;
                    case (byte)'C' when _s.Ftp.ClientTlsRequired:
                        x.Deny(PseudoRules.Protocol, "client_tls: required");
                        await ReplyAsync(x, 534, "Data connections must be protected (PROT P)").ConfigureAwait(false);
                        return true;
                    case (byte)'C':
                        _clientProtP = false;
                        await ReplyAsync(x, 200, "Protection level set to C").ConfigureAwait(false);
                        return true;
                    default:
                        await ReplyAsync(x, 536, "Only PROT C and P are supported").ConfigureAwait(false);
                        return true;
                }
            default: // CCC
                x.Deny(PseudoRules.Protocol, "CCC would expose the rest of the session");
                await ReplyAsync(x, 533, "CCC refused: the control connection stays protected").ConfigureAwait(false);
                return true;
        }
    }
}
