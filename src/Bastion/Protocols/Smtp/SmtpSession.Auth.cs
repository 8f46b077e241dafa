using Bastion.Protocols.Http.Io;
using Bastion.Gateway;
using Bastion.Identity;
using System.Runtime.CompilerServices;

namespace Bastion.Protocols.Smtp;

/// <summary>
/// SMTP AUTH (RFC 4954) towards the client: PLAIN and LOGIN, checked against the gateway's own users
/// (`identity.users`, as the HTTP and SOCKS listeners do), offered only over TLS unless `smtp.auth_without_tls`.
/// A login sets `user` for the policy and the log. The client's credentials never go to the server.
/// </summary>
sealed partial class SmtpSession
{
    string? _authUser;

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> AuthAsync()
    {
        if (_helo is null) { await ReplyAsync("503 5.5.1 send EHLO first").ConfigureAwait(false); return true; }
        if (!_offer.Auth)
        {
            // Configured but the leg is plain: say why (RFC 4954 538), so that the client knows STARTTLS helps.
            if (_cfg.Authenticate && !Client.IsTls && !_smtp.AuthWithoutTls)
                await ReplyAsync("538 5.7.11 encryption required for authentication; STARTTLS first").ConfigureAwait(false);
            else await ReplyAsync("502 5.5.1 AUTH not available").ConfigureAwait(false);
            return true;
        }
        if (_authUser is not null) { await ReplyAsync("503 5.5.1 already authenticated").ConfigureAwait(false); return true; }
        if (_from is not null) { await ReplyAsync("503 5.5.1 AUTH not permitted during a mail transaction").ConfigureAwait(false); return true; }
        bool wellFormed = SaslCredentials.ParseCommand(System.Text.Encoding.ASCII.GetBytes(_cmd.Argument!), out var mech, out var initialSpan, out var hasInitial);
        var initial = hasInitial ? initialSpan.ToArray() : null;
        if (!wellFormed)
        {
            await ReplyAsync("501 5.5.4 AUTH mechanism [initial-response]").ConfigureAwait(false);
            return true;
        }
        if (mech == SaslMechanism.Unknown) { await ReplyAsync("504 5.5.4 unrecognized authentication type (PLAIN, LOGIN)").ConfigureAwait(false); return true; }
        var x = OpenRequest();
        x.Request = mech == SaslMechanism.Plain ? "AUTH PLAIN" : "AUTH LOGIN";
        try
        {
            string user, password, why;
            SaslStatus st;
            if (mech == SaslMechanism.Plain)
            {
                var line = initial ?? await ChallengeAsync("").ConfigureAwait(false);
                if (line is null) return AuthEnded(x);
                st = SaslCredentials.DecodePlain(line, out user, out password, out why);
            }
            else
            {
                var line = initial ?? await ChallengeAsync(SaslCredentials.UserChallenge).ConfigureAwait(false);
                if (line is null) return AuthEnded(x);
                st = SaslCredentials.DecodeText(line, out user, out why);
                password = "";
                if (st == SaslStatus.Ok)
                {
                    line = await ChallengeAsync(SaslCredentials.PasswordChallenge).ConfigureAwait(false);
                    if (line is null) return AuthEnded(x);
                    st = SaslCredentials.DecodeText(line, out password, out why);
                }
            }
            if (st == SaslStatus.Cancelled)
            {
                x.Deny(PseudoRules.Authenticate, why);
                return await Answer(x, 501, "5.0.0", "authentication cancelled").ConfigureAwait(false);
            }
            if (st == SaslStatus.Malformed || user.Length == 0)
            {
                x.Deny(PseudoRules.Authenticate, why);
                return await Answer(x, 501, "5.5.2", $"cannot decode the response: {why}").ConfigureAwait(false);
            }
            x.User = Sanitize(user);
            var result = await LoginAsync(user, password).ConfigureAwait(false);
            if (result != LoginResult.Ok)
            {
                ctx.Metrics.AuthFailure(ctx.Name);
                if (result == LoginResult.Throttled)
                {
                    x.Deny(PseudoRules.Authenticate, $"too many failed logins from {conn.Client.Address}; '{Sanitize(user)}' not checked");
                    return await Answer(x, 454, "4.7.0", "temporary authentication failure; try again later").ConfigureAwait(false);
                }
                x.Deny(PseudoRules.Authenticate, $"bad credentials for '{Sanitize(user)}'");
                return await Answer(x, 535, "5.7.8", "authentication credentials invalid").ConfigureAwait(false);
            }
            _authUser = user;
            _attrs.User = user;
            conn.User = user;
            x.Allow(PseudoRules.Authenticate);
            return await Answer(x, 235, "2.7.0", "authentication successful").ConfigureAwait(false);
        }
        finally { x.Close(); }
    }

    /// <summary>Sends a 334 challenge and reads the client's response line; null when the session ends meanwhile.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<byte[]?> ChallengeAsync(string challenge)
    {
        await ReplyAsync("334 " + challenge, flush: true).ConfigureAwait(false);
        var read = await ReadLineAsync().ConfigureAwait(false);
        if (read is not { } r) return null;
        // Over-long or bare-newline responses cannot be credentials: refused as malformed below.
        if (r.Status == LineStatus.TooLong || r.Flags != LineFlags.None) return "!"u8.ToArray();
        return r.Line.ToArray();
    }

    bool AuthEnded(Exchange x)
    {
        x.Deny(PseudoRules.Authenticate, "the client left during AUTH");
        return false;
    }

    /// <summary>The gateway's users decide; each client address's failures are throttled like the HTTP logins.</summary>
    ValueTask<LoginResult> LoginAsync(string user, string password) =>
        ctx.Runtime.Identity.LoginAsync(user, password, conn.Client.Address, conn.Aborted);

    /// <summary>STARTTLS forgets a login made before it (RFC 3207 4.2), back to what the PROXY header said.</summary>
    void ForgetLogin()
    {
        if (_authUser is null) return;
        _authUser = null;
        conn.User = _proxyUser;
        _attrs.User = _proxyUser;
    }
}
