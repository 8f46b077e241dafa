using System.Collections.Frozen;

namespace Bastion.Protocols.Ftp;

/// <summary>Every verb the gateway knows (RFC 959, 775, 2228, 2389, 2428, 3659 and common extensions).</summary>
public enum FtpVerb : byte
{
    USER, PASS, ACCT, CWD, XCWD, CDUP, XCUP, SMNT, REIN, QUIT, PORT, PASV, EPRT, EPSV, TYPE, STRU, MODE,
    RETR, STOR, STOU, APPE, ALLO, REST, RNFR, RNTO, ABOR, DELE, RMD, XRMD, MKD, XMKD, PWD, XPWD, LIST, NLST,
    MLSD, MLST, SITE, SYST, STAT, HELP, NOOP, FEAT, OPTS, SIZE, MDTM, MFMT, AUTH, PBSZ, PROT, CCC, ADAT, MIC,
    CONF, ENC, LANG, HOST, CLNT,
}

/// <summary>How a command's argument is written (checked before the policy is asked; a mismatch is a 501).</summary>
public enum FtpArg : byte
{
    /// <summary>No argument.</summary>
    None,
    /// <summary>Free text, may be absent (PASS, HELP, ALLO).</summary>
    OptionalText,
    /// <summary>Free text, required (USER, SITE, OPTS).</summary>
    Text,
    /// <summary>A path, required.</summary>
    Path,
    /// <summary>A path, may be absent (MLSD, MLST, STOU).</summary>
    OptionalPath,
    /// <summary>LIST, NLST, STAT: `-flags` options, then an optional path.</summary>
    ListPath,
    /// <summary>MFMT: `YYYYMMDDHHMMSS[.sss] path`.</summary>
    TimeAndPath,
    /// <summary>A decimal number (REST).</summary>
    Number,
    /// <summary>TYPE A, A N, I, L 8, E.</summary>
    Type,
    /// <summary>STRU F.</summary>
    Structure,
    /// <summary>MODE S.</summary>
    Mode,
    /// <summary>PORT h1,h2,h3,h4,p1,p2.</summary>
    Port,
    /// <summary>EPRT |proto|address|port|.</summary>
    Eprt,
    /// <summary>EPSV, EPSV 1, EPSV 2, EPSV ALL.</summary>
    Epsv,
    /// <summary>AUTH TLS (or its aliases).</summary>
    Auth,
    /// <summary>PBSZ n.</summary>
    Pbsz,
    /// <summary>PROT C|S|E|P.</summary>
    Prot,
}

/// <summary>Where a command may be given: before login or only after it.</summary>
public enum FtpPhase : byte
{
    /// <summary>Any time, before or after login.</summary>
    Any,
    /// <summary>Only after a successful login; before it the gateway answers 530 itself.</summary>
    LoggedIn,
}

/// <summary>What the gateway does with an accepted command.</summary>
public enum FtpAction : byte
{
    /// <summary>Relay the line to the server and its reply to the client.</summary>
    Forward,
    /// <summary>Relay, opening the data connections on both sides (RETR, STOR, LIST...).</summary>
    Transfer,
    /// <summary>Answered by the gateway itself (PASV, EPSV, PORT, EPRT, AUTH, PBSZ, PROT, QUIT...).</summary>
    Local,
    /// <summary>Known but not offered through the gateway: 502.</summary>
    NotImplemented,
}

/// <summary>Which way a transfer's bytes go.</summary>
public enum FtpDirection : byte { None, Download, Upload, Listing }

/// <summary>One row of the command table: syntax, when it is allowed, whether it names a path, what it opens.</summary>
public sealed record FtpCommandSpec(FtpVerb Verb, FtpArg Arg, FtpPhase Phase, FtpAction Action, FtpDirection Direction = FtpDirection.None,
    FtpVerb? AliasOf = null)
{
    /// <summary>
    /// The verb as the policy and the log see it: RFC 775's X-forms are their RFC 959 verbs (`XMKD` is `MKD`), so
    /// that a rule on `MKD` cannot be walked around.
    /// </summary>
    public string Name { get; } = (AliasOf ?? Verb).ToString();

    /// <summary>The argument is (or contains) a path that is resolved against the working directory and judged.</summary>
    public bool HasPath => Arg is FtpArg.Path or FtpArg.OptionalPath or FtpArg.ListPath or FtpArg.TimeAndPath;

    public bool OpensData => Action == FtpAction.Transfer;
}

/// <summary>The per-command table (Zorp's FtpProxy shape): one place says what each verb is allowed to do.</summary>
public static class FtpCommands
{
    static FtpCommandSpec S(FtpVerb v, FtpArg a, FtpPhase p, FtpAction x = FtpAction.Forward, FtpDirection d = FtpDirection.None,
        FtpVerb? aliasOf = null) => new(v, a, p, x, d, aliasOf);

    const FtpPhase Any = FtpPhase.Any, In = FtpPhase.LoggedIn;

    public static readonly FtpCommandSpec[] All =
    [
        S(FtpVerb.USER, FtpArg.Text, Any),
        S(FtpVerb.PASS, FtpArg.OptionalText, Any),
        S(FtpVerb.ACCT, FtpArg.Text, Any),
        S(FtpVerb.CWD, FtpArg.Path, In),
        S(FtpVerb.XCWD, FtpArg.Path, In, aliasOf: FtpVerb.CWD),
        S(FtpVerb.CDUP, FtpArg.None, In),
        S(FtpVerb.XCUP, FtpArg.None, In, aliasOf: FtpVerb.CDUP),
        S(FtpVerb.SMNT, FtpArg.Text, In, FtpAction.NotImplemented),
        // REIN would reset the login under the gateway's feet: not offered.
        S(FtpVerb.REIN, FtpArg.None, Any, FtpAction.NotImplemented),
        S(FtpVerb.QUIT, FtpArg.None, Any, FtpAction.Local),
        S(FtpVerb.PORT, FtpArg.Port, In, FtpAction.Local),
        S(FtpVerb.PASV, FtpArg.None, In, FtpAction.Local),
        S(FtpVerb.EPRT, FtpArg.Eprt, In, FtpAction.Local),
        S(FtpVerb.EPSV, FtpArg.Epsv, In, FtpAction.Local),
        S(FtpVerb.TYPE, FtpArg.Type, In),
        S(FtpVerb.STRU, FtpArg.Structure, In),
        S(FtpVerb.MODE, FtpArg.Mode, In),
        S(FtpVerb.RETR, FtpArg.Path, In, FtpAction.Transfer, FtpDirection.Download),
        S(FtpVerb.STOR, FtpArg.Path, In, FtpAction.Transfer, FtpDirection.Upload),
        S(FtpVerb.STOU, FtpArg.OptionalPath, In, FtpAction.Transfer, FtpDirection.Upload),
        S(FtpVerb.APPE, FtpArg.Path, In, FtpAction.Transfer, FtpDirection.Upload),
        S(FtpVerb.ALLO, FtpArg.OptionalText, In),
        S(FtpVerb.REST, FtpArg.Number, In),
        S(FtpVerb.RNFR, FtpArg.Path, In),
        S(FtpVerb.RNTO, FtpArg.Path, In),
        S(FtpVerb.ABOR, FtpArg.None, In),
        S(FtpVerb.DELE, FtpArg.Path, In),
        S(FtpVerb.RMD, FtpArg.Path, In),
        S(FtpVerb.XRMD, FtpArg.Path, In, aliasOf: FtpVerb.RMD),
        S(FtpVerb.MKD, FtpArg.Path, In),
        S(FtpVerb.XMKD, FtpArg.Path, In, aliasOf: FtpVerb.MKD),
        S(FtpVerb.PWD, FtpArg.None, In),
        S(FtpVerb.XPWD, FtpArg.None, In, aliasOf: FtpVerb.PWD),
        S(FtpVerb.LIST, FtpArg.ListPath, In, FtpAction.Transfer, FtpDirection.Listing),
        S(FtpVerb.NLST, FtpArg.ListPath, In, FtpAction.Transfer, FtpDirection.Listing),
        S(FtpVerb.MLSD, FtpArg.OptionalPath, In, FtpAction.Transfer, FtpDirection.Listing),
        S(FtpVerb.MLST, FtpArg.OptionalPath, In),
        S(FtpVerb.SITE, FtpArg.Text, In),
        S(FtpVerb.SYST, FtpArg.None, Any),
        S(FtpVerb.STAT, FtpArg.ListPath, In),
        S(FtpVerb.HELP, FtpArg.OptionalText, Any),
        S(FtpVerb.NOOP, FtpArg.None, Any),
        S(FtpVerb.FEAT, FtpArg.None, Any),
        S(FtpVerb.OPTS, FtpArg.Text, Any),
        S(FtpVerb.SIZE, FtpArg.Path, In),
        S(FtpVerb.MDTM, FtpArg.Path, In),
        S(FtpVerb.MFMT, FtpArg.TimeAndPath, In),
        S(FtpVerb.AUTH, FtpArg.Auth, Any, FtpAction.Local),
        S(FtpVerb.PBSZ, FtpArg.Pbsz, Any, FtpAction.Local),
        S(FtpVerb.PROT, FtpArg.Prot, Any, FtpAction.Local),
        // Dropping TLS on the control channel would expose later commands: refused (533) by the gateway.
        S(FtpVerb.CCC, FtpArg.None, Any, FtpAction.Local),
        S(FtpVerb.ADAT, FtpArg.Text, Any, FtpAction.NotImplemented),
        S(FtpVerb.MIC, FtpArg.Text, Any, FtpAction.NotImplemented),
        S(FtpVerb.CONF, FtpArg.Text, Any, FtpAction.NotImplemented),
        S(FtpVerb.ENC, FtpArg.Text, Any, FtpAction.NotImplemented),
        S(FtpVerb.LANG, FtpArg.OptionalText, Any, FtpAction.NotImplemented),
        // The gateway, not the client, picks the server: HOST (RFC 7151) is not offered.
        S(FtpVerb.HOST, FtpArg.Text, Any, FtpAction.NotImplemented),
        S(FtpVerb.CLNT, FtpArg.Text, Any, FtpAction.Local),
    ];

    static readonly FtpCommandSpec[] ByVerb = BuildByVerb();

    /// <summary>Verb bytes (upper case, packed big-endian into an int) to the spec: a lookup that allocates nothing.</summary>
    static readonly FrozenDictionary<int, FtpCommandSpec> ByKey = All.ToFrozenDictionary(s => Key(s.Verb.ToString()), s => s);

    static FtpCommandSpec[] BuildByVerb()
    {
        var a = new FtpCommandSpec[Enum.GetValues<FtpVerb>().Length];
        foreach (var s in All) a[(int)s.Verb] = s;
        return a;
    }

    public static FtpCommandSpec Get(FtpVerb v) => ByVerb[(int)v];

    static int Key(string verb)
    {
        int k = 0;
        foreach (var c in verb) k = (k << 8) | c;
        return k;
    }

    /// <summary>The spec for a verb of 3-4 ASCII letters, any case; null when unknown.</summary>
    public static FtpCommandSpec? Lookup(ReadOnlySpan<byte> verb)
    {
        if (verb.Length is < 3 or > 4) return null;
        int k = 0;
        foreach (var b in verb)
        {
            int c = b;
            if (c is >= 'a' and <= 'z') c -= 32;
            else if (c is < 'A' or > 'Z') return null;
            k = (k << 8) | c;
        }
        return ByKey.GetValueOrDefault(k);
    }
}
