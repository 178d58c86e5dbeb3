#!/usr/bin/env bash
# deploy/setup.sh: everything thumbd's worker and its application (`thumbd serve`) need on
# Google Cloud, from an empty project to both Deployments running. Idempotent: each step looks
# before it creates, or only adds (IAM bindings, API enablement), so a second run changes
# nothing and an interrupted run can be run again. Names and values are those of the
# deployment contract (deploy/README-setup.md).
#
#   deploy/setup.sh [--dry-run] [--only STEP,...] PROJECT_ID REGION
#
# --dry-run prints every command as it would run, shell-quoted, and calls nothing but the
# local credential check. deploy/README-setup.md says what each step does and why.
set -euo pipefail

readonly ALL_STEPS=(apis registry image pubsub storage iam notification cluster
  workload-identity overlay deploy)

# The APIs the steps call, and those the cluster needs at run time (monitoring for the HPA's
# Pub/Sub metric and the managed Prometheus, iamcredentials for Workload Identity).
readonly APIS=(container.googleapis.com artifactregistry.googleapis.com
  cloudbuild.googleapis.com pubsub.googleapis.com storage.googleapis.com
  monitoring.googleapis.com logging.googleapis.com iam.googleapis.com
  iamcredentials.googleapis.com cloudresourcemanager.googleapis.com)

# The HPA's External metric is served by the Custom Metrics Stackdriver Adapter, installed as
# GKE's "autoscale on Cloud Monitoring metrics" guide does.
readonly METRICS_ADAPTER_MANIFEST=${THUMBD_METRICS_ADAPTER_MANIFEST:-https://raw.githubusercontent.com/GoogleCloudPlatform/k8s-stackdriver/master/custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml}

usage() {
  cat <<EOF
usage: deploy/setup.sh [--dry-run] [--only STEP,...] PROJECT_ID REGION

Sets up thumbd on Google Cloud in project PROJECT_ID and region REGION (e.g. us-central1).
Each step checks what exists before it creates anything; running it again is safe.

  --dry-run        print every command as it would run, run none of them
  --only STEP,...  run only these steps (default: all, or \$THUMBD_SETUP_STEPS), in this order:
                   ${ALL_STEPS[*]}
  -h, --help       this text

Environment: THUMBD_IMAGE_TAG (default: the git commit, -dirty when the tree has changes),
THUMBD_SETUP_STEPS (as --only). gcloud must be authenticated (gcloud auth login), unless
auth/disable_credentials is set (CLOUDSDK_AUTH_DISABLE_CREDENTIALS=true: emulators only).
EOF
}

# Stops before anything was created, with exit 2: bad arguments (usage_error) or a missing
# tool, account or project (stop).
usage_error() {
  echo "setup.sh: $*" >&2
  echo "run deploy/setup.sh --help for usage" >&2
  exit 2
}
stop() {
  echo "setup.sh: $*" >&2
  exit 2
}

# Stops inside a step; the EXIT trap names the step and says that re-running is safe.
die() {
  echo "setup.sh: $*" >&2
  exit 1
}

# --- output: every command is printed, shell-quoted, before it runs (fd 3 is stdout, so the
# --- helpers can print from inside command substitutions)
exec 3>&1
say() { printf '%s\n' "$*" >&3; }

# One shell-quoted line: words that need no quoting stay bare, others are single-quoted (of
# --flag=value, only the value).
quote() {
  local line="" word safe='^[A-Za-z0-9_./:,=@%+-]+$'
  for word in "$@"; do
    if [[ $word =~ $safe ]]; then
      line+=" $word"
    elif [[ $word =~ ^(--[a-z0-9-]+=)(.*)$ ]]; then
      line+=" ${BASH_REMATCH[1]}'${BASH_REMATCH[2]//\'/\'\\\'\'}'"
    else
      line+=" '${word//\'/\'\\\'\'}'"
    fi
  done
  printf '%s' "${line# }"
}

CURRENT_STEP=""
LAST_COMMAND=""

# Prints the command and runs it (unless --dry-run).
run() {
  LAST_COMMAND=$(quote "$@")
  say "$LAST_COMMAND"
  if ((DRY_RUN)); then return 0; fi
  "$@"
}

# IAM bindings: adding a member that is already bound changes nothing. A service account or
# service agent created moments ago can take a minute to be visible to IAM, so a failed
# binding is tried again for about a minute before the step fails.
run_retrying() {
  LAST_COMMAND=$(quote "$@")
  say "$LAST_COMMAND"
  if ((DRY_RUN)); then return 0; fi
  local attempt
  for attempt in 1 2 3 4 5 6; do
    if "$@"; then return 0; fi
    ((attempt < 6)) || break
    say "# failed (attempt $attempt of 6; IAM may not see a new account yet): retrying in 10 s"
    sleep 10
  done
  return 1
}

# A read-only check: true if the command succeeds; `look VAR CMD...` also keeps its output in
# VAR. A dry run calls nothing and plans for a project where nothing exists yet.
look() {
  local _look_var=$1 _look_output
  shift
  say "# check: $(quote "$@")"
  if ((DRY_RUN)); then return 1; fi
  _look_output=$("$@" 2>/dev/null) || return
  printf -v "$_look_var" '%s' "$_look_output"
}
exists() { look _exists_output "$@"; }

# A read-only query: sets the variable NAME to the command's output (to PLACEHOLDER in a dry
# run); fails if the command fails.
query() {
  local _query_var=$1 _query_placeholder=$2 _query_value
  shift 2
  LAST_COMMAND=$(quote "$@")
  say "# query: $LAST_COMMAND"
  if ((DRY_RUN)); then
    printf -v "$_query_var" '%s' "$_query_placeholder"
    return 0
  fi
  _query_value=$("$@") || return
  printf -v "$_query_var" '%s' "$_query_value"
}

kept() { say "# $* exists: kept"; }

begin_step() {
  CURRENT_STEP=$1
  say ""
  say "# === step $1: $2"
}

on_exit() {
  local status=$1
  if ((status != 0)) && [[ -n $CURRENT_STEP ]]; then
    {
      echo "setup.sh: step '$CURRENT_STEP' failed (exit $status)${LAST_COMMAND:+ at: $LAST_COMMAND}"
      echo "setup.sh: the steps before it are complete and nothing after it ran. Fix the cause" \
        "and run the same command again: every step checks what exists first, so re-running is safe."
    } >&2
  fi
}
trap 'on_exit $?' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- arguments

DRY_RUN=0
ONLY=${THUMBD_SETUP_STEPS:-}
positional=()
while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --only)
      (($# >= 2)) || usage_error "--only needs a list of steps"
      ONLY=$2
      shift
      ;;
    --only=*) ONLY=${1#--only=} ;;
    -h | --help)
      usage
      exit 0
      ;;
    --) shift; positional+=("$@"); break ;;
    -*) usage_error "unknown option $1" ;;
    *) positional+=("$1") ;;
  esac
  shift
done
if ((${#positional[@]} != 2)); then
  echo "setup.sh: PROJECT_ID and REGION are required (got ${#positional[@]} arguments)" >&2
  usage >&2
  exit 2
fi
PROJECT=${positional[0]}
REGION=${positional[1]}
# Project ids: 6-30 lowercase letters, digits and hyphens, starting with a letter (domain-scoped
# ids are refused: the bucket names derive from the id).
[[ $PROJECT =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] ||
  usage_error "'$PROJECT' is not a project id (6-30 lowercase letters, digits, hyphens)"
[[ $REGION =~ ^[a-z]+-[a-z]+[0-9]+$ ]] ||
  usage_error "'$REGION' is not a region (like us-central1); a zone is not accepted"

declare -A SELECTED=()
if [[ -z $ONLY ]]; then
  for s in "${ALL_STEPS[@]}"; do SELECTED[$s]=1; done
else
  IFS=, read -r -a requested <<<"$ONLY"
  for s in "${requested[@]}"; do
    [[ " ${ALL_STEPS[*]} " == *" $s "* ]] ||
      usage_error "unknown step '$s' (steps: ${ALL_STEPS[*]})"
    SELECTED[$s]=1
  done
fi
selected() { [[ -n ${SELECTED[$1]:-} ]]; }

# Relative paths in the printed commands (deploy/cloudbuild.yaml, deploy/gke-overlays/...)
# are from the repository root.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --- names (the deployment contract)

readonly UPLOADS_BUCKET=$PROJECT-thumbd-uploads
readonly THUMBNAILS_BUCKET=$PROJECT-thumbd-thumbnails
readonly UPLOADS_TOPIC=thumbd-uploads
readonly EVENTS_TOPIC=thumbd-events
readonly DEAD_LETTER_TOPIC=thumbd-dead-letter
readonly WORK_SUBSCRIPTION=thumbd-work
readonly DEAD_LETTER_SUBSCRIPTION=thumbd-dead-letter
readonly REPOSITORY=thumbd
readonly CLUSTER=thumbd
readonly NAMESPACE=thumbd
readonly KSA=thumbd-worker
readonly GSA=thumbd-worker@$PROJECT.iam.gserviceaccount.com
# The application: its own subscription to the events, identity and bearer-token Secret.
readonly SERVE_SUBSCRIPTION=thumbd-serve-events
readonly SERVE_KSA=thumbd-serve
readonly SERVE_GSA=thumbd-serve@$PROJECT.iam.gserviceaccount.com
readonly SERVE_SECRET=thumbd-serve
readonly KUBE_CONTEXT=gke_${PROJECT}_${REGION}_${CLUSTER}
readonly OVERLAY_DIR=deploy/gke-overlays/$PROJECT
readonly IMAGE_NAME=$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/thumbd

# The image tag: the commit the image is built from, marked -dirty when the work tree has
# uncommitted changes (such an image is always rebuilt).
image_tag() {
  if [[ -n ${THUMBD_IMAGE_TAG:-} ]]; then
    printf '%s' "$THUMBD_IMAGE_TAG"
  elif ! git describe --always --dirty --abbrev=12 --exclude='*' 2>/dev/null; then
    printf 'manual-%s' "$(date -u +%Y%m%d-%H%M%S)"
  fi
}
IMAGE_TAG=$(image_tag)
readonly IMAGE_TAG IMAGE=$IMAGE_NAME:$IMAGE_TAG
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
readonly REVISION

# gcloud must never stop to ask a question (an API to enable, a condition to pick).
export CLOUDSDK_CORE_DISABLE_PROMPTS=1

# --- preflight: nothing is created before these pass

preflight() {
  command -v gcloud >/dev/null ||
    stop "gcloud is not installed (https://cloud.google.com/sdk/docs/install)"
  if selected deploy || selected overlay; then
    command -v kubectl >/dev/null ||
      stop "kubectl is not installed (gcloud components install kubectl, or the distribution's package)"
  fi
  if selected deploy && ! command -v gke-gcloud-auth-plugin >/dev/null; then
    stop "gke-gcloud-auth-plugin is not installed (gcloud components install gke-gcloud-auth-plugin)"
  fi

  local disabled account=""
  disabled=$(gcloud config get auth/disable_credentials 2>/dev/null || true)
  if [[ ${disabled,,} =~ ^(1|true|yes|on|y)$ ]]; then
    CREDENTIALS=0
    say "# credentials disabled (auth/disable_credentials): no account or project check;" \
      "only emulators, through CLOUDSDK_API_ENDPOINT_OVERRIDES_*, will answer"
  else
    CREDENTIALS=1
    account=$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null || true)
    [[ -n $account ]] ||
      stop "gcloud has no active account: run 'gcloud auth login' first (nothing was created)"
    say "# gcloud account: $account"
  fi

  # The project number names the Pub/Sub service agent and the workload identity pool's
  # principals; reading it also proves the project exists and the account can see it.
  PROJECT_NUMBER=PROJECT_NUMBER
  if ((CREDENTIALS || DRY_RUN)); then
    query PROJECT_NUMBER PROJECT_NUMBER gcloud projects describe "$PROJECT" --format='value(projectNumber)' ||
      stop "cannot read project '$PROJECT' as $account (above): check the id and the account's access"
  elif ((!DRY_RUN)) && { selected iam || selected workload-identity; }; then
    stop "steps iam and workload-identity need the project number: not with credentials disabled"
  fi
  readonly PROJECT_NUMBER
}

# --- steps: step_NAME does step NAME, one kind of resource each

step_apis() {
  begin_step apis "enable the APIs thumbd uses (enabling an enabled API changes nothing)"
  run gcloud services enable "${APIS[@]}" --project="$PROJECT"
}

step_registry() {
  begin_step registry "Artifact Registry docker repository $REPOSITORY in $REGION"
  if exists gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" --project="$PROJECT"; then
    kept "repository $REPOSITORY"
  else
    run gcloud artifacts repositories create "$REPOSITORY" --repository-format=docker \
      --location="$REGION" --project="$PROJECT" --description="thumbd worker images"
  fi
}

# Cloud Build runs deploy/Dockerfile with the repository root as the context (--tag would
# look for a Dockerfile at the root), so the build is described in deploy/cloudbuild.yaml.
step_image() {
  begin_step image "build $IMAGE with Cloud Build"
  if [[ $IMAGE_TAG != *-dirty ]] &&
    exists gcloud artifacts docker images describe "$IMAGE" --project="$PROJECT"; then
    kept "image $IMAGE"
    return
  fi
  run gcloud builds submit . --project="$PROJECT" --region="$REGION" \
    --config=deploy/cloudbuild.yaml --substitutions="_IMAGE=$IMAGE,_REVISION=$REVISION"
}

ensure_topic() {
  local topic=$1
  if exists gcloud pubsub topics describe "$topic" --project="$PROJECT"; then
    kept "topic $topic"
  else
    run gcloud pubsub topics create "$topic" --project="$PROJECT"
  fi
}

# Creates the subscription, or brings an existing one to these settings, updating only what
# differs (so a second run changes nothing). A SETTING is 'FIELD=VALUE[,FIELD=VALUE...] FLAG...':
# the flags that set these fields of the subscription (as `describe` shows them). A
# subscription's topic cannot change: one on another topic stops the step.
ensure_subscription() {
  local name=$1 topic=$2 setting checks check flag_text fields=topic state differs pos=1
  shift 2
  local -a all_flags=() stale=() current wanted flags
  for setting in "$@"; do
    read -r checks flag_text <<<"$setting"
    IFS=, read -r -a wanted <<<"$checks"
    fields+=$(printf ',%s' "${wanted[@]%%=*}")
    read -r -a flags <<<"$flag_text"
    all_flags+=("${flags[@]}")
  done
  if ! look state gcloud pubsub subscriptions describe "$name" --project="$PROJECT" \
    --format="value[separator=\"|\"]($fields)"; then
    run gcloud pubsub subscriptions create "$name" --project="$PROJECT" --topic="$topic" "${all_flags[@]}"
    return
  fi
  IFS='|' read -r -a current <<<"$state"
  [[ ${current[0]} == "projects/$PROJECT/topics/$topic" ]] ||
    die "subscription $name exists on ${current[0]}, not on $topic: delete it, or use another project"
  for setting in "$@"; do
    read -r checks flag_text <<<"$setting"
    IFS=, read -r -a wanted <<<"$checks"
    differs=0
    for check in "${wanted[@]}"; do
      [[ ${current[pos]:-} == "${check#*=}" ]] || differs=1
      pos=$((pos + 1))
    done
    if ((differs)); then
      read -r -a flags <<<"$flag_text"
      stale+=("${flags[@]}")
    fi
  done
  if ((${#stale[@]} == 0)); then
    kept "subscription $name, with these settings,"
  else
    run gcloud pubsub subscriptions update "$name" --project="$PROJECT" "${stale[@]}"
  fi
}

step_pubsub() {
  begin_step pubsub "topics $UPLOADS_TOPIC, $EVENTS_TOPIC, $DEAD_LETTER_TOPIC; subscriptions $WORK_SUBSCRIPTION, $DEAD_LETTER_SUBSCRIPTION, $SERVE_SUBSCRIPTION"
  ensure_topic "$UPLOADS_TOPIC"
  ensure_topic "$EVENTS_TOPIC"
  ensure_topic "$DEAD_LETTER_TOPIC"
  # The work queue: a message nacked or not acked in time comes back after 10 s, then up to
  # 600 s (exponential); after 5 deliveries it goes to the dead-letter topic. Never deleted
  # for inactivity (a subscription idle for 31 days is, by default).
  ensure_subscription "$WORK_SUBSCRIPTION" "$UPLOADS_TOPIC" \
    "ackDeadlineSeconds=60 --ack-deadline=60" \
    "retryPolicy.minimumBackoff=10s,retryPolicy.maximumBackoff=600s --min-retry-delay=10s --max-retry-delay=600s" \
    "deadLetterPolicy.deadLetterTopic=projects/$PROJECT/topics/$DEAD_LETTER_TOPIC,deadLetterPolicy.maxDeliveryAttempts=5 --dead-letter-topic=$DEAD_LETTER_TOPIC --max-delivery-attempts=5" \
    "expirationPolicy.ttl= --expiration-period=never"
  # Without a subscription, messages published to the dead-letter topic would be dropped:
  # this one keeps them 7 days, and never expires.
  ensure_subscription "$DEAD_LETTER_SUBSCRIPTION" "$DEAD_LETTER_TOPIC" \
    "messageRetentionDuration=604800s --message-retention-duration=7d" \
    "expirationPolicy.ttl= --expiration-period=never"
  # The application's live updates: the worker's ready and failed events. Relaying one takes a
  # storage read (retried up to 10 s), well within 30 s. Kept 10 minutes, the least Pub/Sub
  # allows: an older event is of no use to a page (a reconnecting client refetches the list),
  # and a serve that was down does not replay a week of them. No dead-letter topic: serve acks
  # every event but those it cannot read the state of during a storage outage, which come back
  # until storage answers or the 10 minutes pass; the state itself stays in storage.
  ensure_subscription "$SERVE_SUBSCRIPTION" "$EVENTS_TOPIC" \
    "ackDeadlineSeconds=30 --ack-deadline=30" \
    "messageRetentionDuration=600s --message-retention-duration=10m" \
    "expirationPolicy.ttl= --expiration-period=never"
}

# Uniform bucket-level access: IAM on the bucket is the only access control (no object ACLs),
# which the worker's grants rely on; public access prevention on top. An existing bucket
# without them is updated.
ensure_bucket() {
  local bucket=gs://$1 state
  if look state gcloud storage buckets describe "$bucket" --project="$PROJECT" \
    --format='value[separator=" "](uniform_bucket_level_access,public_access_prevention)'; then
    if [[ ${state,,} == "true enforced" ]]; then
      kept "bucket $bucket, uniform access, public access prevented,"
    else
      run gcloud storage buckets update "$bucket" --project="$PROJECT" \
        --uniform-bucket-level-access --public-access-prevention
    fi
  else
    run gcloud storage buckets create "$bucket" --project="$PROJECT" --location="$REGION" \
      --uniform-bucket-level-access --public-access-prevention
  fi
}

step_storage() {
  begin_step storage "buckets gs://$UPLOADS_BUCKET and gs://$THUMBNAILS_BUCKET (thumbnails in their own bucket, without notifications)"
  ensure_bucket "$UPLOADS_BUCKET"
  ensure_bucket "$THUMBNAILS_BUCKET"
}

# A Google service account for one workload, created once.
ensure_service_account() {
  local account=$1 display=$2
  if exists gcloud iam service-accounts describe "$account" --project="$PROJECT"; then
    kept "service account $account"
  else
    run gcloud iam service-accounts create "${account%%@*}" --project="$PROJECT" \
      --display-name="$display"
  fi
}

step_iam() {
  begin_step iam "service agents', the worker's and the application's permissions (each binding is added once)"
  local storage_agent pubsub_agent=service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com
  query storage_agent "service-$PROJECT_NUMBER@gs-project-accounts.iam.gserviceaccount.com" \
    gcloud storage service-agent --project="$PROJECT"
  # Cloud Storage publishes the uploads bucket's notifications.
  run_retrying gcloud pubsub topics add-iam-policy-binding "$UPLOADS_TOPIC" --project="$PROJECT" \
    --member="serviceAccount:$storage_agent" --role=roles/pubsub.publisher --format=none
  # Pub/Sub forwards dead letters: it publishes to the dead-letter topic and acks (subscribes
  # to) the work subscription.
  run_retrying gcloud pubsub topics add-iam-policy-binding "$DEAD_LETTER_TOPIC" --project="$PROJECT" \
    --member="serviceAccount:$pubsub_agent" --role=roles/pubsub.publisher --format=none
  run_retrying gcloud pubsub subscriptions add-iam-policy-binding "$WORK_SUBSCRIPTION" --project="$PROJECT" \
    --member="serviceAccount:$pubsub_agent" --role=roles/pubsub.subscriber --format=none

  ensure_service_account "$GSA" "thumbd worker (GKE, Workload Identity)"
  # Least privilege, each on one resource: read originals (objects.get/list); on thumbnails
  # objectUser, since the worker reads a thumbnail's recorded source generation and replaces
  # it conditionally (objects.get + create + delete; objectCreator has create only); pull
  # the work subscription; publish ready events.
  run_retrying gcloud storage buckets add-iam-policy-binding "gs://$UPLOADS_BUCKET" --project="$PROJECT" \
    --member="serviceAccount:$GSA" --role=roles/storage.objectViewer --format=none
  run_retrying gcloud storage buckets add-iam-policy-binding "gs://$THUMBNAILS_BUCKET" --project="$PROJECT" \
    --member="serviceAccount:$GSA" --role=roles/storage.objectUser --format=none
  run_retrying gcloud pubsub subscriptions add-iam-policy-binding "$WORK_SUBSCRIPTION" --project="$PROJECT" \
    --member="serviceAccount:$GSA" --role=roles/pubsub.subscriber --format=none
  run_retrying gcloud pubsub topics add-iam-policy-binding "$EVENTS_TOPIC" --project="$PROJECT" \
    --member="serviceAccount:$GSA" --role=roles/pubsub.publisher --format=none

  ensure_service_account "$SERVE_GSA" "thumbd serve, the application (GKE, Workload Identity)"
  # The application: create uploads (objectCreator: create only; every create is
  # ifGenerationMatch=0, so it never overwrites, and needs no delete) and list and read them
  # for the gallery (objectViewer); read thumbnails and failure records; pull its own events
  # subscription. It cannot touch thumbnails nor the worker's subscription.
  run_retrying gcloud storage buckets add-iam-policy-binding "gs://$UPLOADS_BUCKET" --project="$PROJECT" \
    --member="serviceAccount:$SERVE_GSA" --role=roles/storage.objectCreator --format=none
  run_retrying gcloud storage buckets add-iam-policy-binding "gs://$UPLOADS_BUCKET" --project="$PROJECT" \
    --member="serviceAccount:$SERVE_GSA" --role=roles/storage.objectViewer --format=none
  run_retrying gcloud storage buckets add-iam-policy-binding "gs://$THUMBNAILS_BUCKET" --project="$PROJECT" \
    --member="serviceAccount:$SERVE_GSA" --role=roles/storage.objectViewer --format=none
  run_retrying gcloud pubsub subscriptions add-iam-policy-binding "$SERVE_SUBSCRIPTION" --project="$PROJECT" \
    --member="serviceAccount:$SERVE_GSA" --role=roles/pubsub.subscriber --format=none
}

# After iam: Cloud Storage refuses a notification to a topic its service agent may not
# publish to. gcloud's own topic set-up is skipped: the pubsub and iam steps did it.
step_notification() {
  begin_step notification "OBJECT_FINALIZE notifications (JSON payload) from gs://$UPLOADS_BUCKET to $UPLOADS_TOPIC"
  local expected="//pubsub.googleapis.com/projects/$PROJECT/topics/$UPLOADS_TOPIC OBJECT_FINALIZE JSON_API_V1"
  local configs
  query configs "" gcloud storage buckets notifications list "gs://$UPLOADS_BUCKET" --project="$PROJECT" \
    --format='value[separator=" "]("Notification Configuration".topic,"Notification Configuration".event_types.list(),"Notification Configuration".payload_format)'
  if grep -qxF "$expected" <<<"$configs"; then
    kept "notification to $UPLOADS_TOPIC"
    return
  fi
  if grep -q "/topics/$UPLOADS_TOPIC " <<<"$configs"; then
    say "# note: gs://$UPLOADS_BUCKET already notifies $UPLOADS_TOPIC with other settings;" \
      "each upload will be delivered once per configuration (see: gcloud storage buckets notifications list)"
  fi
  run gcloud storage buckets notifications create "gs://$UPLOADS_BUCKET" --project="$PROJECT" \
    --topic="projects/$PROJECT/topics/$UPLOADS_TOPIC" --event-types=OBJECT_FINALIZE \
    --payload-format=json --skip-topic-setup
}

# Autopilot bills what the pods request, so the 2-vCPU pods pack without node sizing
# (deploy/README-setup.md compares Standard node sizes). Workload Identity is always on.
step_cluster() {
  begin_step cluster "GKE Autopilot cluster $CLUSTER in $REGION"
  if exists gcloud container clusters describe "$CLUSTER" --location="$REGION" --project="$PROJECT"; then
    kept "cluster $CLUSTER"
  else
    run gcloud container clusters create-auto "$CLUSTER" --location="$REGION" --project="$PROJECT" \
      --release-channel=regular
  fi
}

# After the cluster: the workload identity pool PROJECT.svc.id.goog exists only once a
# cluster with Workload Identity does.
step_workload_identity() {
  begin_step workload-identity "Kubernetes ServiceAccounts that act as Google identities"
  # The worker's KSA acts as the worker's GSA.
  run_retrying gcloud iam service-accounts add-iam-policy-binding "$GSA" --project="$PROJECT" \
    --member="serviceAccount:$PROJECT.svc.id.goog[$NAMESPACE/$KSA]" \
    --role=roles/iam.workloadIdentityUser --format=none
  # The application's KSA acts as the application's GSA.
  run_retrying gcloud iam service-accounts add-iam-policy-binding "$SERVE_GSA" --project="$PROJECT" \
    --member="serviceAccount:$PROJECT.svc.id.goog[$NAMESPACE/$SERVE_KSA]" \
    --role=roles/iam.workloadIdentityUser --format=none
  # The metrics adapter reads the Pub/Sub backlog metric the HPA scales on.
  run_retrying gcloud projects add-iam-policy-binding "$PROJECT" \
    --member="principal://iam.googleapis.com/projects/$PROJECT_NUMBER/locations/global/workloadIdentityPools/$PROJECT.svc.id.goog/subject/ns/custom-metrics/sa/custom-metrics-stackdriver-adapter" \
    --role=roles/monitoring.viewer --condition=None --format=none
}

# The kustomize overlay of this project: the base deploy/gke with its placeholders replaced.
# IMAGE_REF is the image's `digest: sha256:…` (or `newTag: TAG` when it cannot be read).
overlay_yaml() {
  cat <<EOF
# Written by deploy/setup.sh for project $PROJECT in $REGION (rewritten on each run):
# deploy/gke with this project's names. Apply with: kubectl apply -k $OVERLAY_DIR
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../gke
configMapGenerator:
  - name: thumbd-worker
    namespace: $NAMESPACE
    behavior: merge
    literals:
      - THUMBD_SUBSCRIPTION=projects/$PROJECT/subscriptions/$WORK_SUBSCRIPTION
      - THUMBD_SOURCE_BUCKETS=$UPLOADS_BUCKET
      - THUMBD_OUTPUT_BUCKET=$THUMBNAILS_BUCKET
      - THUMBD_EVENTS_TOPIC=projects/$PROJECT/topics/$EVENTS_TOPIC
  - name: thumbd-serve
    namespace: $NAMESPACE
    behavior: merge
    literals:
      - THUMBD_UPLOAD_BUCKET=$UPLOADS_BUCKET
      - THUMBD_EVENTS_SUBSCRIPTION=projects/$PROJECT/subscriptions/$SERVE_SUBSCRIPTION
# The Deployments' image "thumbd", whether the base left it bare or set its placeholder name.
images:
  - name: thumbd
    newName: $IMAGE_NAME
    $IMAGE_REF
  - name: REGION-docker.pkg.dev/PROJECT_ID/thumbd/thumbd
    newName: $IMAGE_NAME
    $IMAGE_REF
patches:
  - patch: |-
      apiVersion: v1
      kind: ServiceAccount
      metadata:
        name: $KSA
        namespace: $NAMESPACE
        annotations:
          iam.gke.io/gcp-service-account: $GSA
  - patch: |-
      apiVersion: v1
      kind: ServiceAccount
      metadata:
        name: $SERVE_KSA
        namespace: $NAMESPACE
        annotations:
          iam.gke.io/gcp-service-account: $SERVE_GSA
EOF
}

step_overlay() {
  begin_step overlay "kustomize overlay $OVERLAY_DIR (gitignored), checked by rendering it"
  # The pods run the image by digest: exactly the one built, whatever the tag points to later.
  local digest file=$OVERLAY_DIR/kustomization.yaml rendered
  if ((CREDENTIALS || DRY_RUN)); then
    query digest sha256:IMAGE_DIGEST gcloud artifacts docker images describe "$IMAGE" \
      --project="$PROJECT" --format='value(image_summary.digest)'
    IMAGE_REF="digest: $digest"
  else
    say "# credentials disabled: the image is named by its tag"
    IMAGE_REF="newTag: $IMAGE_TAG"
  fi
  LAST_COMMAND="writing $file"
  say "mkdir -p $OVERLAY_DIR && cat >$file <<'EOF'"
  overlay_yaml >&3
  say "EOF"
  if ((!DRY_RUN)); then
    mkdir -p "$OVERLAY_DIR"
    overlay_yaml >"$file"
  fi
  # Rendered offline. A placeholder left in an image, a ConfigMap value or the Workload
  # Identity annotation means deploy/gke has a name this overlay does not set.
  query rendered "" kubectl kustomize "$OVERLAY_DIR"
  if grep -nE '^ *(- )?(image|[A-Z_]+|iam\.gke\.io/gcp-service-account): .*(PROJECT_ID|REGION-docker)' \
    <<<"$rendered" >&2; then
    die "the rendered overlay still holds placeholders (above): deploy/gke has a name setup.sh does not set"
  fi
}

# 32 random bytes as 64 hex digits, no newline (the Secret's value is the token exactly).
random_token() {
  od -An -vtx1 -N32 /dev/urandom | tr -d ' \n'
}

# The application's bearer token, in a Secret outside the kustomize set (so it is in no file):
# created once with a random token, which goes to kubectl on stdin and is never printed; an
# existing Secret is kept, so re-running never changes the token under running clients.
ensure_token_secret() {
  if exists kubectl --context="$KUBE_CONTEXT" --namespace="$NAMESPACE" get secret "$SERVE_SECRET"; then
    kept "secret $NAMESPACE/$SERVE_SECRET (the application's bearer token)"
    return
  fi
  say "# a random token (32 bytes, 64 hex digits) on stdin: it is never printed"
  run kubectl --context="$KUBE_CONTEXT" --namespace="$NAMESPACE" create secret generic \
    "$SERVE_SECRET" --from-file=auth-token=/dev/stdin < <(random_token)
}

step_deploy() {
  begin_step deploy "the metrics adapter, the application's token and thumbd's manifests on cluster $CLUSTER"
  run gcloud container clusters get-credentials "$CLUSTER" --location="$REGION" --project="$PROJECT"
  run kubectl --context="$KUBE_CONTEXT" apply -f "$METRICS_ADAPTER_MANIFEST"
  # The namespace first: the token's Secret lives in it, and serve's pods wait for the Secret.
  run kubectl --context="$KUBE_CONTEXT" apply -f deploy/gke/namespace.yaml
  ensure_token_secret
  run kubectl --context="$KUBE_CONTEXT" apply -k "$OVERLAY_DIR"
  run kubectl --context="$KUBE_CONTEXT" --namespace="$NAMESPACE" rollout status \
    deployment/thumbd-worker --timeout=15m
  run kubectl --context="$KUBE_CONTEXT" --namespace="$NAMESPACE" rollout status \
    deployment/thumbd-serve --timeout=15m
  say "# the application: kubectl --context=$KUBE_CONTEXT -n $NAMESPACE port-forward svc/thumbd-serve 8080:80"
  say "#   then http://127.0.0.1:8080/ ; its token (for uploads):"
  say "#   kubectl --context=$KUBE_CONTEXT -n $NAMESPACE get secret $SERVE_SECRET -o jsonpath='{.data.auth-token}' | base64 -d"
}

# --- main

mode=""
((DRY_RUN)) && mode=" (dry run: nothing is called)"
say "# thumbd setup: project $PROJECT, region $REGION, image $IMAGE$mode"
say "# commands run from the repository root, with CLOUDSDK_CORE_DISABLE_PROMPTS=1"
((DRY_RUN)) && say "# PROJECT_NUMBER stands for the number the query below reads"
preflight
for s in "${ALL_STEPS[@]}"; do
  if selected "$s"; then
    "step_${s//-/_}"
  fi
done
CURRENT_STEP=""
say ""
say "# done$mode: running it again changes nothing"
