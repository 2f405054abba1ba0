//! The console's words, in English and Chinese: one table, so every text a page shows has
//! both, and adding a message without its translation does not compile.
//!
//! It owns the wording and the choice of language. It must not hold data: values are
//! placed beside these texts by the pages, never formatted into them.

/// The languages the console speaks; Chinese first, as the seeds' users work in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Zh,
    En,
}

impl Lang {
    pub(crate) const ALL: [Lang; 2] = [Lang::Zh, Lang::En];

    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    pub(crate) fn parse(code: &str) -> Option<Self> {
        Lang::ALL.into_iter().find(|lang| lang.code() == code)
    }

    /// The language's own name, for the switch.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Lang::Zh => "中文",
            Lang::En => "English",
        }
    }

    /// From an `Accept-Language` header: the first of zh or en it names, else Chinese.
    pub(crate) fn from_accept(header: Option<&str>) -> Self {
        header
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(|item| item.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .find_map(|tag| Lang::parse(tag.split('-').next().unwrap_or("")))
            .unwrap_or(Lang::Zh)
    }
}

macro_rules! messages {
    ($($key:ident => $en:literal, $zh:literal;)*) => {
        /// Every text the console shows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Msg { $($key),* }

        impl Msg {
            #[cfg(test)]
            pub(crate) const ALL: &'static [Msg] = &[$(Msg::$key),*];

            pub(crate) fn text(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((Msg::$key, Lang::En) => $en, (Msg::$key, Lang::Zh) => $zh,)*
                }
            }
        }
    };
}

messages! {
    Title => "Sluice: public data, usable but not visible", "Sluice 公共数据授权运营沙箱：数据可用不可见";
    SignIn => "Sign in", "登录";
    SignOut => "Sign out", "退出登录";
    Token => "Access token", "访问令牌";
    TokenHelp => "Paste the token your administrator issued you. It is kept in a cookie this browser sends only to this console.",
        "请粘贴管理员为您签发的令牌。令牌保存在仅发送给本控制台的 Cookie 中。";
    SignedInAs => "Signed in as", "当前用户";
    Role => "Role", "角色";
    Organisation => "Organisation", "单位";
    RoleAdmin => "administrator", "平台管理员";
    RoleProvider => "data provider", "数据提供单位";
    RoleOperator => "data operator", "数据运营单位";
    RoleReviewer => "reviewer", "审核人员";
    RoleRegulator => "regulator", "监管人员";
    Home => "Home", "首页";
    AuditTrail => "Audit trail", "审计日志";
    Language => "Language", "语言";
    Id => "ID", "编号";
    State => "State", "状态";
    Name => "Name", "名称";
    Dataset => "Dataset", "数据集";
    JoinedDataset => "Joined on the ids (another department's)", "按标识关联（另一部门的）";
    PseudonymOf => "stored as keyed pseudonyms of", "以密钥化假名存储，原为";
    Purpose => "Purpose", "用途";
    UseScope => "Scope of use", "使用范围";
    SecurityMeasures => "Security measures", "安全保障措施";
    Window => "Valid", "有效期";
    Columns => "Columns", "字段";
    Column => "Column", "字段";
    Type => "Type", "类型";
    Classification => "Classification", "分级";
    EpsilonRequested => "ε requested", "申请隐私预算 ε";
    Applications => "Scenario applications", "场景申请";
    Application => "Application", "场景申请";
    ApplicationsAwaiting => "Applications awaiting review", "待审核的场景申请";
    Models => "Models", "模型";
    Model => "Model", "模型";
    ModelsAwaiting => "Models awaiting review", "待审核的模型";
    HeldResults => "Results held for data product review", "待审核的数据产品（暂扣结果）";
    Runs => "Runs", "运行记录";
    Run => "Run", "运行";
    Nothing => "Nothing here.", "暂无。";
    Open => "Open", "查看";
    Authorisation => "Authorisation", "授权";
    Digest => "Digest (BLAKE3)", "摘要（BLAKE3）";
    EpsilonPerRun => "ε per run", "每次运行 ε";
    Inputs => "Inputs (granted columns it reads)", "输入（读取的已授权字段）";
    Outputs => "Outputs (what it releases, with noise)", "输出（加噪后发布的内容）";
    Kind => "Kind", "类型";
    Bounds => "Clamp bounds", "截断范围";
    Epsilon => "ε", "ε";
    GroupBy => "Grouped by", "分组字段";
    FuelPerRow => "Fuel per row", "每行燃料上限";
    ManifestText => "Manifest as submitted", "提交的清单原文";
    AutomatedReview => "Automated review", "自动审核";
    StaticReview => "Static review", "静态审查";
    DummyRun => "Run on dummy rows", "模拟数据试运行";
    DummyRows => "dummy rows", "行模拟数据";
    Exact => "Exact on dummy rows", "模拟数据上的精确值";
    Noisy => "Noisy release", "加噪发布值";
    Interval => "± 95%", "± 95% 区间";
    Passed => "passed", "通过";
    Failed => "failed", "未通过";
    Checklist => "Review checklist (seed 002 §23)", "审核要点（第二十三条）";
    CheckUsability => "Usability: it runs within the limits and produces the declared outputs",
        "可用性：在限制内运行并产生所声明的输出";
    CheckConsistency => "Consistency: what it computes matches the application's stated purpose",
        "一致性：计算内容与申请用途一致";
    CheckCompliance => "Compliance: it reads only granted columns and releases only what the rules allow",
        "合规性：仅读取已授权字段，仅发布规则允许的内容";
    CheckSecurity => "Security: nothing in it tries to carry data out or to attack the sandbox",
        "安全性：不含外带数据或攻击沙箱的行为";
    Comment => "Comment", "审核意见";
    Approve => "Approve", "通过";
    Reject => "Reject", "驳回";
    Release => "Release", "发布";
    Withhold => "Withhold", "不予发布";
    HoldOutputs => "Hold every result of this scenario for data product review", "该场景的每次结果均需数据产品审核后发布";
    WhyNoReviewRole => "Only reviewers decide here: whoever submits, applies for or runs a model never reviews it (separation of duties).",
        "仅审核人员可在此作出决定：提交、申请或运行模型的一方不得审核（职责分离）。";
    WhyStageBureau => "This stage is the data bureau's: it reviews the demand and the operator first.",
        "本阶段由数据主管部门审核：先审核需求与运营单位资质。";
    WhyStageDepartment => "This stage is the providing department's: it reviews after the data bureau, against classification and use boundaries.",
        "本阶段由数据提供部门审核：在数据主管部门之后，依据分类分级与使用边界审核。";
    WhyNoReviewState => "There is nothing to decide: it is not awaiting review.", "无需审核：当前不在待审核状态。";
    RunIt => "Run on the real data", "在真实数据上运行";
    RunHelp => "Each run is charged to the scenario's privacy budget; only noisy aggregates come back.",
        "每次运行都会扣减场景的隐私预算；返回的只有加噪后的汇总结果。";
    Rows => "Rows", "行数";
    Value => "Value", "值";
    Suppressed => "suppressed (too few rows)", "已抑制（样本过少）";
    Pending => "Not visible yet: the result is released at", "尚不可见，结果将于以下时间发布：";
    Receipt => "Receipt: proof the release was logged", "回执：发布已记入审计日志的证明";
    ReceiptHelp => "Save it and check it offline with `sluice receipt verify`.", "保存后可用 `sluice receipt verify` 离线核验。";
    Budget => "Privacy budget", "隐私预算";
    Spent => "spent", "已用";
    Left => "left", "剩余";
    Total => "total", "总额";
    EpsilonCharged => "ε charged", "扣减 ε";
    DatasetBudget => "Dataset's lifetime budget", "数据集总预算";
    Filters => "Filters", "筛选";
    Action => "Action", "操作";
    Actor => "Actor id", "操作者编号";
    Object => "Object (prefix)", "对象（前缀）";
    Outcome => "Outcome", "结果";
    Since => "From (RFC 3339)", "起始时间（RFC 3339）";
    Until => "Until (RFC 3339)", "截止时间（RFC 3339）";
    Search => "Search", "查询";
    Time => "Time", "时间";
    Reason => "Reason", "原因";
    Details => "Details", "详情";
    Export => "Export the whole log (NDJSON, verifiable offline)", "导出完整日志（NDJSON，可离线核验）";
    Checkpoint => "Latest signed checkpoint", "最新签名检查点";
    Entries => "Entries", "条目";
    Entry => "Audit entry", "审计条目";
    InclusionProof => "Inclusion proof against the latest checkpoint", "对最新检查点的包含证明";
    VerifyOffline => "Verify it offline: `sluice audit verify` on the export, with the pinned public key.",
        "离线核验：使用固定公钥对导出文件运行 `sluice audit verify`。";
    NotCovered => "Not yet covered by a checkpoint.", "尚未被检查点覆盖。";
    ShowingLatest => "Newest first; at most 200 shown.", "按时间倒序，最多显示 200 条。";
    Versions => "Versions", "版本";
    Version => "Version", "版本";
    Created => "Created", "创建时间";
    AuthorisedOperators => "Who is authorised", "已授权的运营单位";
    Operator => "Operator", "运营单位";
    Revoked => "revoked", "已撤销";
    Destroy => "Destroy this dataset (its keys are deleted; nothing can be read again)",
        "销毁该数据集（删除密钥，数据将无法再读取）";
    ConfirmName => "Type the dataset's name to confirm", "输入数据集名称以确认";
    Destroyed => "destroyed", "已销毁";
    Organisations => "Organisations", "单位";
    Principals => "Accounts", "账户";
    PendingApproval => "awaiting a second administrator", "待第二名管理员批准";
    Disabled => "disabled", "已停用";
    Active => "active", "正常";
    Licence => "Licence", "许可证";
    TokenShownOnce => "The new account's token, shown once. Hand it over securely; only its hash is kept.",
        "新账户的令牌仅显示一次，请安全交付；系统只保存其哈希值。";
    Error => "The request was refused", "请求被拒绝";
    IssueToken => "Issue a new token (the old one stops working)", "签发新令牌（旧令牌立即失效）";
    DisableAccount => "Disable for good", "永久停用";
    DisableReason => "Reason", "停用原因";
    RequestId => "Request id", "请求编号";
    Back => "Back", "返回";
    Done => "Done.", "已完成。";
    ConfirmMismatch => "The name typed does not match the dataset's name.", "输入的名称与数据集名称不一致。";
    Denials => "Denials, newest first", "拒绝记录（按时间倒序）";
    Usage => "Usage per scenario and month", "各场景按月使用情况";
    UsageHelp => "Runs, rows processed and ε spent per scenario and month, and model review turnaround: for evaluating scenarios and for metering.",
        "各场景每月的运行次数、处理行数、隐私预算消耗及模型审核时长，用于成效评估与计量计费。";
    EpsilonByMonth => "ε spent per month", "每月隐私预算消耗";
    Month => "Month", "月份";
    Scenario => "Scenario", "场景";
    Released => "released", "已发布";
    RowsProcessed => "Rows processed", "处理行数";
    ModelsReviewed => "Models reviewed", "已审核模型";
    Turnaround => "Review turnaround (h, mean / max)", "审核时长（小时，平均/最长）";
    DownloadCsv => "Download CSV", "下载 CSV";
    Alerts => "Alerts", "风险预警";
    AlertsHelp => "Computed from the audit log and recorded in it: bursts of denials, failed sign-ins, fast budget burn, repeated runs, resubmission after rejection.",
        "根据审计日志计算并记入日志：集中拒绝、登录失败、预算快速消耗、重复运行、驳回后重新提交。";
    Subject => "Subject", "对象";
    Count => "Count", "次数";
    Entries2 => "Entries (first – last)", "条目（首 – 末）";
    MinGroupSize => "Smallest group released", "最小发布分组规模";
    Witnesses => "Witnesses", "见证方";
    WitnessesHelp => "Independent witnesses cosign checkpoints after checking the log only grew; a witness behind the latest checkpoint has not yet seen its newest entries.",
        "独立见证方在核实日志只增不改后为检查点联署；落后于最新检查点的见证方尚未见到最新条目。";
    NoWitnesses => "No witness is configured and none has cosigned: the checkpoints are signed by the gateway alone.",
        "未配置见证方，也无联署：检查点仅由网关签名。";
    Witness => "Witness", "见证方";
    Accepted => "Accepted", "是否接受";
    Yes => "yes", "是";
    No => "no (no longer configured)", "否（已不在配置中）";
    Cosignatures => "Checkpoints cosigned", "已联署检查点";
    LatestCosigned => "Latest cosigned (size, time)", "最近联署（规模，时间）";
    UpToDate => "up to date", "已同步";
    EntriesBehind => "entries behind", "条未见证";
    BudgetOverTime => "Budgets over time", "隐私预算随时间变化";
    BudgetOverTimeHelp => "Share of each budget spent by the end of each month; the line at the top is the whole budget.",
        "各预算截至每月月底的已消耗比例；顶部横线为预算总额。";
    PerScenario => "Per scenario (authorisation)", "按场景（授权）";
    PerDataset => "Per dataset (lifetime)", "按数据集（全生命周期）";
    NewOrganisation => "New organisation", "新建单位";
    NewPrincipal => "New account", "新建账户";
    Create => "Create", "创建";
    ReviewerKindLabel => "Reviewer kind (reviewers only)", "审核方类型（仅审核人员）";
    LicenceNumber => "Licence number (operators only)", "许可证编号（仅运营单位）";
    LicenceFrom => "Licence valid from (RFC 3339)", "许可证生效时间（RFC 3339）";
    LicenceUntil => "Licence valid until (RFC 3339)", "许可证截止时间（RFC 3339）";
    PendingCreated => "Created; it awaits a second administrator's approval, which issues its token.",
        "已创建；待第二名管理员批准后签发令牌。";
    NewDataset => "Register a dataset", "登记数据集";
    SchemaToml => "Schema (TOML, as in examples/)", "数据结构（TOML，格式见 examples/）";
    EpsilonTotal => "Lifetime ε budget", "全生命周期隐私预算 ε";
    UploadVersion => "Upload a new version (CSV with a header row)", "上传新版本（含表头的 CSV）";
    SkipInvalid => "Skip invalid rows (counted, never shown)", "跳过无效行（仅计数，不显示内容）";
    Upload => "Upload", "上传";
    Ingested => "Ingested", "已导入";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_both_languages_and_they_differ_where_words_are_translated() {
        for message in Msg::ALL {
            for lang in Lang::ALL {
                assert!(!message.text(lang).trim().is_empty(), "{message:?} has no {lang:?} text");
            }
        }
        // Chinese text is Chinese: most messages carry a CJK character in it.
        let chinese = Msg::ALL
            .iter()
            .filter(|message| message.text(Lang::Zh).chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
            .count();
        assert!(chinese * 10 >= Msg::ALL.len() * 9, "{chinese} of {} messages are in Chinese", Msg::ALL.len());
    }

    #[test]
    fn the_language_comes_from_the_browser_and_defaults_to_chinese() {
        assert_eq!(Lang::from_accept(Some("en-GB,en;q=0.9")), Lang::En);
        assert_eq!(Lang::from_accept(Some("zh-CN,zh;q=0.9,en;q=0.8")), Lang::Zh);
        assert_eq!(Lang::from_accept(Some("fr-FR, en;q=0.5")), Lang::En);
        assert_eq!(Lang::from_accept(Some("fr-FR")), Lang::Zh);
        assert_eq!(Lang::from_accept(None), Lang::Zh);
    }
}
